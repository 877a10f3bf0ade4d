import { NODE_ID_HEADER, signRequest, type NodeCredential, type NodeHeartbeat } from "@seventy/sdk/protocol";

const BEAT_TIMEOUT_MS = 30_000;

export interface HeartbeatOptions {
  edgeUrl: string;
  /** Heartbeats are signed with the credential's node key and name its node id. */
  credential: NodeCredential;
  intervalMs: number;
  /** Builds the current report (load changes every beat). */
  report: () => NodeHeartbeat;
  onError?: (message: string) => void;
}

/**
 * Joins the edge's pool: a signed heartbeat every interval. The first beat goes out at once; a
 * failed beat is retried on the next tick (the edge drops a node only after several misses).
 *
 * A beat is given BEAT_TIMEOUT_MS, far more than an interval: an edge saturated with user traffic
 * answers late, and a beat given up on the client side (its connection closed) may never reach
 * the pool, whereas one answered late still renews the node. While one is on its way the next
 * tick is skipped, so beats reach the edge in order (it refuses one older than the last).
 */
export function startHeartbeat(opts: HeartbeatOptions): { stop(): void; beat(): Promise<boolean> } {
  const url = new URL("/internal/nodes/heartbeat", opts.edgeUrl);
  let stopped = false;
  let lastError = "";
  const beat = async (): Promise<boolean> => {
    const body = JSON.stringify(opts.report());
    try {
      const headers = await signRequest({
        method: "POST",
        path: url.pathname,
        body,
        secret: opts.credential.nodeKey,
        signed: { [NODE_ID_HEADER]: opts.credential.nodeId },
      });
      const res = await fetch(url, {
        method: "POST",
        body,
        headers: { ...headers, "content-type": "application/json" },
        signal: AbortSignal.timeout(Math.max(BEAT_TIMEOUT_MS, opts.intervalMs)),
      });
      await res.body?.cancel();
      if (!res.ok) throw new Error(`edge answered ${res.status}`);
      lastError = "";
      return true;
    } catch (err) {
      const cause = (err as { cause?: { code?: unknown } }).cause?.code;
      const msg = `heartbeat to ${url.origin} failed: ${(err as Error).message}${typeof cause === "string" ? ` (${cause})` : ""}`;
      // Report a failure once, not on every tick.
      if (msg !== lastError) opts.onError?.(msg);
      lastError = msg;
      return false;
    }
  };
  let inFlight = false;
  const tick = async () => {
    if (stopped || inFlight) return;
    inFlight = true;
    try {
      await beat();
    } finally {
      inFlight = false;
    }
  };
  const timer = setInterval(() => void tick(), opts.intervalMs);
  timer.unref();
  void tick();
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
    },
    beat,
  };
}
