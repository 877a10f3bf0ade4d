import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
import { cacheSaltOf, type KeyLimits, type KeyRecord } from "../keys/record";
import { UsageSeries, type SeriesBucket, type SeriesWindow } from "../usage/series";
import { TokenBucket } from "./bucket";

export interface RateSnapshot {
  limitRequests: number;
  remainingRequests: number;
  resetRequestsMs: number;
  limitTokens: number;
  remainingTokens: number;
  resetTokensMs: number;
}

export type Admission =
  | { ok: true; keyId: string; cacheSalt: string; leaseId: string; models: string[] | null; rate: RateSnapshot }
  | {
      ok: false;
      status: 401 | 403 | 429;
      message: string;
      code: string;
      type?: string;
      param?: string;
      keyId?: string;
      retryAfterMs?: number;
      rate?: RateSnapshot;
    };

export interface UsageReport {
  promptTokens: number;
  completionTokens: number;
  /** Prompt tokens the node served from its prefix cache (when it said so). */
  cachedTokens?: number;
  /** The request ended in an error (upstream failure, cut-off stream, error status). */
  error: boolean;
}

/** A finished request: its lease and what it really used. */
export interface LeaseRelease {
  leaseId: string;
  usage: UsageReport;
}

export interface UsageDay {
  day: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  errors: number;
  rate_limited: number;
}

export interface LimiterState {
  inFlight: number;
  reservedTokens: number;
  remainingRequests: number;
  remainingTokens: number;
}

interface Lease {
  tokens: number;
  expires: number;
}

const MINUTE = 60_000;
const LEASES_KEY = "leases";
const USAGE_PREFIX = "usage:";
/**
 * Hot-path state (leases, usage counters) is written behind, at most once per FLUSH_MS: a storage
 * commit costs a disk sync, far more than an admission, so one commit covers a second of traffic.
 * A crash loses at most that second of metering; leases lost that way only free slots early.
 */
const FLUSH_MS = 1000;

export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function periodKey(period: "day" | "month", ms: number): string {
  return period === "day" ? utcDay(ms) : utcDay(ms).slice(0, 7);
}

function msUntilPeriodEnd(period: "day" | "month", ms: number): number {
  const d = new Date(ms);
  const end =
    period === "day"
      ? Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() + 1)
      : Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
  return end - ms;
}

function emptyDay(day: string): UsageDay {
  return { day, requests: 0, prompt_tokens: 0, completion_tokens: 0, errors: 0, rate_limited: 0 };
}

/**
 * One object per API key (named by the key's SHA-256). It is the gate every request of that key
 * passes: it holds the key's record (so disabling or deleting a key takes effect on the next
 * request), the request and token buckets, the leases of requests in flight, and usage by day.
 *
 * Every method runs to completion without awaiting, so concurrent admissions are decided one at
 * a time against the same state: 50 concurrent requests against a limit of 10 admit exactly 10.
 */
export class KeyLimiter extends DurableObject<Env> {
  private record: KeyRecord | null;
  private requests: TokenBucket | null = null;
  private tokens: TokenBucket | null = null;
  private readonly leases = new Map<string, Lease>();
  private reservedTokens = 0;
  private leaseSeq = 0;
  private readonly instance = crypto.randomUUID().slice(0, 8);
  /** Usage rows touched since this object started (the newest values; storage may lag FLUSH_MS). */
  private readonly days = new Map<string, UsageDay>();
  private readonly dirtyDays = new Set<string>();
  private leasesDirty = false;
  private flushTimer: ReturnType<typeof setTimeout> | null = null;
  private periodUsage: { key: string; tokens: number } | null = null;
  /** Leases released lately: a release that arrives twice (a retried batch) is applied once. */
  private readonly released = new Set<string>();
  /** Usage by minute and by day for the dashboard's charts (bounded rings). */
  private readonly series = new UsageSeries(this.ctx.storage.kv);

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    const kv = ctx.storage.kv;
    this.record = kv.get<KeyRecord>("record") ?? null;
    const now = Date.now();
    if (this.record) this.applyLimits(this.record.limits, now);
    for (const [id, lease] of kv.get<[string, Lease][]>(LEASES_KEY) ?? []) {
      if (lease.expires > now) {
        this.leases.set(id, lease);
        this.reservedTokens += lease.tokens;
      }
    }
  }

  /** Stores the record (created or updated by the registry) and applies its limits at once. */
  async configure(record: KeyRecord): Promise<void> {
    this.record = record;
    this.applyLimits(record.limits, Date.now());
    await this.ctx.storage.put("record", record);
  }

  /** Deletes the key for good: the next request with it is refused. Usage history stays. */
  async revoke(): Promise<void> {
    if (!this.record) return;
    this.record = { ...this.record, deleted: Math.floor(Date.now() / 1000) };
    await this.ctx.storage.put("record", this.record);
  }

  /** Authenticates and checks model access without admitting anything. */
  check(model: string | null): Admission {
    const refused = this.refuseAccess(model);
    if (refused) return refused;
    const r = this.record!;
    return { ok: true, keyId: r.id, cacheSalt: cacheSaltOf(r), leaseId: "", models: r.models, rate: this.snapshot(Date.now()) };
  }

  /**
   * Admits a request that may use up to `tokens` tokens (estimated prompt + max completion), or
   * says why not. An admitted request holds a lease until it is released. `releases` are finished
   * requests that ride along (applied first, so the decision sees them).
   */
  admit(model: string, tokens: number, leaseTtlMs: number, releases?: LeaseRelease[]): Admission {
    if (releases) this.settle(releases);
    const refused = this.refuseAccess(model);
    if (refused) return refused;
    const r = this.record!;
    const now = Date.now();
    this.expireLeases(now);
    const requests = this.requests!;
    const bucket = this.tokens!;
    requests.refill(now);
    bucket.refill(now);
    const limits = r.limits;

    if (r.budget) {
      const used = this.usedInPeriod(r.budget.period, now);
      if (used + this.reservedTokens + tokens > r.budget.tokens) {
        return this.limited(now, 429, {
          message: `This key has used its ${r.budget.period === "day" ? "daily" : "monthly"} budget of ${r.budget.tokens} tokens.`,
          code: "insufficient_quota",
          type: "insufficient_quota",
          retryAfterMs: msUntilPeriodEnd(r.budget.period, now),
        });
      }
    }
    if (this.leases.size >= limits.concurrency) {
      return this.limited(now, 429, {
        message: `Concurrency limit reached: ${limits.concurrency} requests in flight.`,
        code: "concurrency_limit_exceeded",
        retryAfterMs: 1000,
      });
    }
    if (requests.level < 1) {
      const wait = requests.msUntil(1);
      return this.limited(now, 429, {
        message: `Rate limit reached for requests per minute: limit ${limits.rpm}. Please try again in ${(wait / 1000).toFixed(1)}s.`,
        code: "rate_limit_exceeded",
        retryAfterMs: wait,
      });
    }
    if (tokens > limits.tpm) {
      return this.limited(now, 429, {
        message: `Request too large: it may use ${tokens} tokens (prompt estimate + max_tokens), more than this key's limit of ${limits.tpm} tokens per minute. Lower max_tokens or the prompt.`,
        code: "tokens_per_minute_exceeded",
      });
    }
    if (bucket.level < tokens) {
      const wait = bucket.msUntil(tokens);
      return this.limited(now, 429, {
        message: `Rate limit reached for tokens per minute: limit ${limits.tpm}, requested ${tokens}. Please try again in ${(wait / 1000).toFixed(1)}s.`,
        code: "rate_limit_exceeded",
        retryAfterMs: wait,
      });
    }

    requests.take(1);
    bucket.take(tokens);
    const leaseId = `${this.instance}.${++this.leaseSeq}`;
    const lease = { tokens, expires: now + leaseTtlMs };
    this.leases.set(leaseId, lease);
    this.reservedTokens += tokens;
    this.leasesChanged();
    return { ok: true, keyId: r.id, cacheSalt: cacheSaltOf(r), leaseId, models: r.models, rate: this.snapshot(now) };
  }

  /** Ends leases (see `release`). */
  settle(releases: LeaseRelease[]): void {
    for (const r of releases) this.release(r.leaseId, r.usage);
  }

  /** Ends a lease: returns the reserved tokens, charges the real usage and meters it. */
  release(leaseId: string, usage: UsageReport): RateSnapshot | null {
    if (this.released.has(leaseId)) return null;
    if (this.released.size >= 10_000) this.released.clear();
    this.released.add(leaseId);
    const now = Date.now();
    const actual = Math.max(0, usage.promptTokens) + Math.max(0, usage.completionTokens);
    const lease = this.leases.get(leaseId);
    this.tokens?.refill(now);
    if (lease) {
      this.leases.delete(leaseId);
      this.reservedTokens -= lease.tokens;
      this.tokens?.give(lease.tokens - actual);
      this.leasesChanged();
    } else {
      // The lease was reclaimed (or this object restarted): still charge what was used.
      this.tokens?.take(actual);
    }
    const row = this.day(utcDay(now));
    row.requests += 1;
    row.prompt_tokens += Math.max(0, usage.promptTokens);
    row.completion_tokens += Math.max(0, usage.completionTokens);
    if (usage.error) row.errors += 1;
    this.saveDay(row);
    this.series.record(now, usage);
    if (this.periodUsage && this.record?.budget && this.periodUsage.key === periodKey(this.record.budget.period, now)) {
      this.periodUsage.tokens += actual;
    }
    return this.record && this.requests ? this.snapshot(now) : null;
  }

  /** Usage by UTC day, oldest first, optionally within [from, to] (YYYY-MM-DD). */
  usage(from?: string, to?: string): UsageDay[] {
    const out: UsageDay[] = [];
    for (const row of this.allDays(USAGE_PREFIX).values()) {
      if ((from && row.day < from) || (to && row.day > to)) continue;
      out.push({ ...row });
    }
    return out.sort((a, b) => (a.day < b.day ? -1 : 1));
  }

  /** Usage over the last hour by minute or the last 30 days by day, oldest bucket first. */
  usageSeries(window: SeriesWindow): SeriesBucket[] {
    return this.series.read(window, Date.now());
  }

  /** Writes pending state now (also runs by itself FLUSH_MS after a change). */
  flush(): void {
    if (this.flushTimer !== null) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    const kv = this.ctx.storage.kv;
    for (const day of this.dirtyDays) {
      const row = this.days.get(day);
      if (row) kv.put(USAGE_PREFIX + day, row);
    }
    this.dirtyDays.clear();
    if (this.leasesDirty) {
      kv.put(LEASES_KEY, [...this.leases]);
      this.leasesDirty = false;
    }
  }

  /** Live state, for the admin API and tests. */
  state(): LimiterState {
    const now = Date.now();
    this.expireLeases(now);
    this.requests?.refill(now);
    this.tokens?.refill(now);
    return {
      inFlight: this.leases.size,
      reservedTokens: this.reservedTokens,
      remainingRequests: this.requests?.remaining() ?? 0,
      remainingTokens: this.tokens?.remaining() ?? 0,
    };
  }

  private refuseAccess(model: string | null): Admission | null {
    const r = this.record;
    if (!r || r.deleted) {
      return { ok: false, status: 401, message: "Incorrect API key provided.", code: "invalid_api_key" };
    }
    if (r.expires_at != null && r.expires_at * 1000 <= Date.now()) {
      return { ok: false, status: 401, message: "This API key has expired.", code: "key_expired", keyId: r.id };
    }
    if (r.disabled) {
      return { ok: false, status: 401, message: "This API key is disabled.", code: "key_disabled", keyId: r.id };
    }
    if (model !== null && r.models !== null && !r.models.includes(model)) {
      return {
        ok: false,
        status: 403,
        message: `This API key may not use the model '${model}'.`,
        code: "model_not_allowed",
        param: "model",
        keyId: r.id,
        rate: this.snapshot(Date.now()),
      };
    }
    return null;
  }

  private limited(
    now: number,
    status: 429,
    detail: { message: string; code: string; type?: string; retryAfterMs?: number },
  ): Admission {
    const row = this.day(utcDay(now));
    row.rate_limited += 1;
    this.saveDay(row);
    return { ok: false, status, ...detail, keyId: this.record!.id, rate: this.snapshot(now) };
  }

  private snapshot(now: number): RateSnapshot {
    const requests = this.requests!;
    const tokens = this.tokens!;
    requests.refill(now);
    tokens.refill(now);
    return {
      limitRequests: requests.capacity,
      remainingRequests: requests.remaining(),
      resetRequestsMs: requests.msUntilFull(),
      limitTokens: tokens.capacity,
      remainingTokens: tokens.remaining(),
      resetTokensMs: tokens.msUntilFull(),
    };
  }

  private applyLimits(limits: KeyLimits, now: number): void {
    if (this.requests) this.requests.resize(limits.rpm);
    else this.requests = new TokenBucket(limits.rpm, MINUTE, now);
    if (this.tokens) this.tokens.resize(limits.tpm);
    else this.tokens = new TokenBucket(limits.tpm, MINUTE, now);
  }

  private expireLeases(now: number): void {
    for (const [id, lease] of this.leases) {
      if (lease.expires <= now) {
        this.leases.delete(id);
        this.reservedTokens -= lease.tokens;
        this.leasesChanged();
      }
    }
  }

  private day(day: string): UsageDay {
    let row = this.days.get(day);
    if (!row) {
      row = this.ctx.storage.kv.get<UsageDay>(USAGE_PREFIX + day) ?? emptyDay(day);
      // Keep memory bounded: forget flushed rows of other days.
      if (this.days.size > 8) for (const d of this.days.keys()) if (!this.dirtyDays.has(d)) this.days.delete(d);
      this.days.set(day, row);
    }
    return row;
  }

  private saveDay(row: UsageDay): void {
    this.dirtyDays.add(row.day);
    this.scheduleFlush();
  }

  private leasesChanged(): void {
    this.leasesDirty = true;
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    this.flushTimer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** Stored rows under `prefix`, with the newer in-memory rows laid over them. */
  private allDays(prefix: string): Map<string, UsageDay> {
    const rows = new Map<string, UsageDay>();
    for (const [, row] of this.ctx.storage.kv.list<UsageDay>({ prefix })) rows.set(row.day, row);
    for (const row of this.days.values()) if ((USAGE_PREFIX + row.day).startsWith(prefix)) rows.set(row.day, row);
    return rows;
  }

  private usedInPeriod(period: "day" | "month", now: number): number {
    const key = periodKey(period, now);
    if (this.periodUsage?.key !== key) {
      let tokens = 0;
      for (const row of this.allDays(USAGE_PREFIX + key).values()) tokens += row.prompt_tokens + row.completion_tokens;
      this.periodUsage = { key, tokens };
    }
    return this.periodUsage.tokens;
  }
}

// Object ids are plain values (idFromName hashes the name): computed once per key per isolate.
const ids = new Map<string, DurableObjectId>();

export function limiterFor(env: Env, keyHash: string): DurableObjectStub<KeyLimiter> {
  let id = ids.get(keyHash);
  if (!id) {
    if (ids.size >= 10_000) ids.clear();
    id = env.KEY_LIMITER.idFromName(keyHash);
    ids.set(keyHash, id);
  }
  return env.KEY_LIMITER.get(id);
}
