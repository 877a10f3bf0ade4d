import { APIUserAbortError, type SeventyError, type TimeoutPhase } from "../core/errors.js";

/**
 * One attempt's AbortController. The first reason wins and is kept, so whoever reads a failed
 * `fetch` or body read learns *why* (the caller's signal, a timeout) instead of a bare AbortError.
 */
export class Abortable {
  readonly controller = new AbortController();
  reason: SeventyError | undefined;
  private readonly listeners: (() => void)[] = [];
  private unlink: (() => void) | undefined;

  constructor(userSignal?: AbortSignal | null) {
    if (!userSignal) return;
    if (userSignal.aborted) {
      this.abort(new APIUserAbortError());
      return;
    }
    const onAbort = () => this.abort(new APIUserAbortError());
    userSignal.addEventListener("abort", onAbort, { once: true });
    this.unlink = () => userSignal.removeEventListener("abort", onAbort);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  abort(reason: SeventyError): void {
    if (this.reason) return;
    this.reason = reason;
    this.release();
    this.controller.abort(reason);
    for (const fn of this.listeners.splice(0)) fn();
  }

  /** Runs `fn` on abort (at once if already aborted). */
  onAbort(fn: () => void): void {
    if (this.reason) fn();
    else this.listeners.push(fn);
  }

  /** Stops listening to the caller's signal: a long-lived signal must not collect listeners. */
  release(): void {
    this.unlink?.();
    this.unlink = undefined;
  }

  /** Rejects when aborted, so a `fetch` that ignores its signal still cannot hang the caller. */
  race<T>(promise: Promise<T>): Promise<T> {
    if (this.reason) return Promise.reject(this.reason);
    return new Promise<T>((resolve, reject) => {
      this.onAbort(() => reject(this.reason));
      promise.then(resolve, reject);
    });
  }
}

/**
 * A timer that fires when `limitMs` pass without `touch()`. Touching only stores a timestamp; the
 * timer re-arms itself for the remaining time when it wakes, so a stream of thousands of chunks
 * costs one `Date.now()` per network piece instead of a clearTimeout/setTimeout pair.
 */
export class Watchdog {
  private last = Date.now();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private limitMs = 0;
  private phase: TimeoutPhase = "request";

  constructor(private readonly onFire: (limitMs: number, phase: TimeoutPhase) => void) {}

  /** Starts (or restarts) with a new limit, counted from now. A limit of 0 or less, or Infinity, disables it. */
  arm(limitMs: number, phase: TimeoutPhase): void {
    this.stop();
    this.limitMs = limitMs;
    this.phase = phase;
    this.last = Date.now();
    if (limitMs > 0 && Number.isFinite(limitMs)) this.schedule(limitMs);
  }

  touch(): void {
    this.last = Date.now();
  }

  stop(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      const left = this.limitMs - (Date.now() - this.last);
      if (left > 0) this.schedule(left);
      else {
        this.timer = undefined;
        this.onFire(this.limitMs, this.phase);
      }
    }, ms);
  }
}

/** Sleeps, but wakes early (rejecting) when the caller aborts. */
export function sleep(ms: number, signal?: AbortSignal | null): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new APIUserAbortError());
    const onAbort = () => {
      clearTimeout(timer);
      reject(new APIUserAbortError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
