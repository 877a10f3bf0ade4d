import type { EdgeConfig } from "../config";
import type { Env } from "../env";
import { logError, logInfo, type LogFields } from "../log";
import type { Spent, TokenCount } from "../proxy/usage";
import { limiterFor } from "./key-limiter";
import { queueRelease, sendReleasesNow } from "./releases";
import type { Reservation } from "./reservation";

/** How a request ended, as its meter records it. */
export interface Ending {
  /** What the request's attempts used, as far as the nodes reported it. */
  spent: Spent;
  /** The request failed (an error status, a cut-off stream); a client that left is no error. */
  error: boolean;
  /** The client was gone: the release is sent now, from this request (its timers may not fire). */
  clientGone?: boolean;
  /** Identifiers and numbers for the request's log line. */
  log: LogFields;
}

/**
 * What a request is charged: the usage its nodes reported, or the whole reservation when one of
 * its attempts may have used tokens nobody reported (a node that died or froze mid-request). The
 * reservation is the most the nodes could have used, so the charge never falls short.
 */
export function charge(spent: Spent, reservation: Reservation): TokenCount {
  if (spent.unknown || spent.promptTokens + spent.completionTokens > reservation.total) {
    return { promptTokens: reservation.prompt, completionTokens: reservation.total - reservation.prompt };
  }
  return { promptTokens: spent.promptTokens, completionTokens: spent.completionTokens, cachedTokens: spent.cachedTokens ?? 0 };
}

/**
 * The one place a request's lease ends. Created when the key's limiter admitted the request; it
 * keeps the lease alive while the request runs (renewing it every third of LEASE_TTL_MS) and
 * `end` — called once, whatever ended the request — stops the renewals, charges the usage,
 * releases the lease and writes the request's log line. Later calls do nothing.
 *
 * Renewals ride on the timers the request already has (`renewIfDue` at the ticks of its upstream
 * attempt, then of its stream's clock); most requests end long before their first renewal is due.
 */
export class RequestMeter {
  private ended = false;
  private readonly renewEveryMs: number;
  private renewAt: number;
  private settle!: () => void;
  /** The charge, once ended (for callers that report it). */
  charged: TokenCount | null = null;

  constructor(
    private readonly env: Env,
    private readonly cfg: EdgeConfig,
    private readonly ctx: ExecutionContext,
    private readonly keyHash: string,
    readonly leaseId: string,
    readonly reservation: Reservation,
    private readonly base: LogFields,
  ) {
    // Registered while the request is surely alive, this keeps the invocation running until the
    // release has been handed on, even if the client goes.
    ctx.waitUntil(new Promise<void>((resolve) => (this.settle = resolve)));
    this.renewEveryMs = Math.max(1000, Math.floor(cfg.leaseTtlMs / 3));
    this.renewAt = Date.now() + this.renewEveryMs;
  }

  /** Renews the lease when a third of LEASE_TTL_MS has passed since it was taken or renewed. */
  renewIfDue(now = Date.now()): void {
    if (this.ended || now < this.renewAt) return;
    this.renewAt = now + this.renewEveryMs;
    limiterFor(this.env, this.keyHash)
      .renew([this.leaseId], this.cfg.leaseTtlMs)
      .catch(() => undefined);
  }

  get isEnded(): boolean {
    return this.ended;
  }

  end(e: Ending): void {
    if (this.ended) return;
    this.ended = true;
    const used = charge(e.spent, this.reservation);
    this.charged = used;
    const lease = { leaseId: this.leaseId, usage: { ...used, error: e.error } };
    if (e.clientGone) {
      void sendReleasesNow(this.env, this.keyHash, lease).finally(this.settle);
    } else {
      queueRelease(this.env, this.keyHash, lease, (p) => this.ctx.waitUntil(p));
      this.settle();
    }
    if (this.cfg.logRequests || e.error) {
      (e.error ? logError : logInfo)("request", {
        ...this.base,
        prompt_tokens: used.promptTokens,
        completion_tokens: used.completionTokens,
        // What the nodes reported, when that is not what was charged (an attempt went unreported).
        usage_unknown: e.spent.unknown,
        reported_tokens: e.spent.promptTokens + e.spent.completionTokens,
        ...e.log,
      });
    }
  }
}
