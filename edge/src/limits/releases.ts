import type { Env } from "../env";
import { logError } from "../log";
import { limiterFor, type LeaseRelease } from "./key-limiter";

/**
 * Finished requests wait here, per key, for the next admission of the same key in this isolate
 * to carry them to the KeyLimiter: under load that saves one object round trip per request.
 * A release nobody picks up within RELEASE_DELAY_MS is sent on its own by the request that made
 * it (its `waitUntil` keeps the invocation alive until then). Admission stays exact either way (a
 * late release only frees capacity late); a key busy enough to make the delay matter has an
 * admission every few milliseconds, which carries the release sooner, so under load almost no
 * release costs a round trip of its own.
 */
export const RELEASE_DELAY_MS = 20;
/** Waits before the retries of a release whose send failed. */
const RETRY_DELAYS_MS = [100, 1000];

const pending = new Map<string, LeaseRelease[]>();

/** Takes the releases waiting for `keyHash` (the caller sends them, or gives them back). */
export function takeReleases(keyHash: string): LeaseRelease[] | undefined {
  const list = pending.get(keyHash);
  if (list) pending.delete(keyHash);
  return list;
}

/** Puts releases back after a failed send; the next admission or flush carries them. */
export function returnReleases(keyHash: string, releases: LeaseRelease[] | undefined): void {
  if (!releases || releases.length === 0) return;
  const list = pending.get(keyHash);
  pending.set(keyHash, list ? [...releases, ...list] : releases);
}

/** Keys with a flush timer running in this isolate. */
const flushing = new Set<string>();

/**
 * Queues a release. If no flush is due for the key yet, this request schedules one and
 * `waitUntil` keeps it alive until it is sent; otherwise the due flush carries it.
 */
export function queueRelease(env: Env, keyHash: string, release: LeaseRelease, waitUntil: (p: Promise<unknown>) => void): void {
  const list = pending.get(keyHash);
  if (list) list.push(release);
  else pending.set(keyHash, [release]);
  if (!flushing.has(keyHash)) {
    flushing.add(keyHash);
    waitUntil(flushLater(env, keyHash));
  }
}

/**
 * Sends the key's waiting releases now, from the calling request. For requests whose client has
 * gone: their invocation may be torn down before any timer fires.
 */
export async function sendReleasesNow(env: Env, keyHash: string, release: LeaseRelease): Promise<void> {
  const batch = [...(takeReleases(keyHash) ?? []), release];
  try {
    await limiterFor(env, keyHash).settle(batch);
  } catch (err) {
    returnReleases(keyHash, batch);
    logError("release_failed", { releases: batch.length, error: err instanceof Error ? err.message : "unknown" });
  }
}

async function flushLater(env: Env, keyHash: string): Promise<void> {
  for (let attempt = 0; attempt <= RETRY_DELAYS_MS.length; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, attempt === 0 ? RELEASE_DELAY_MS : RETRY_DELAYS_MS[attempt - 1]));
    const batch = takeReleases(keyHash);
    if (!batch) break;
    try {
      await limiterFor(env, keyHash).settle(batch);
      break;
    } catch (err) {
      returnReleases(keyHash, batch);
      logError("release_failed", { releases: batch.length, attempt, error: err instanceof Error ? err.message : "unknown" });
    }
  }
  flushing.delete(keyHash);
  // Releases queued while the last send was in flight get their own flush.
  if (pending.has(keyHash)) {
    flushing.add(keyHash);
    await flushLater(env, keyHash);
  }
}

/** Forgets everything (tests). */
export function resetReleases(): void {
  pending.clear();
  flushing.clear();
}
