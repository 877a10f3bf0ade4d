import { DEFAULT_MAX_SKEW_SECONDS, NODE_ID_HEADER, signRequest, type NodeCredential } from "@seventy/sdk/protocol";

export interface EdgeProbe {
  reachable: boolean;
  /** Why not (connection refused, DNS, TLS, status). */
  error?: string;
  /** Our clock minus the edge's, in seconds (its `/health` time, else its `Date` header, at mid round trip). */
  skewSeconds?: number;
  /** The edge's answer to a signed heartbeat probe: accepted, refused, or something unexpected. */
  signature?: "accepted" | "refused" | { unexpected: number };
}

/**
 * Reaches the edge, reads its clock, and sends one request to its heartbeat endpoint signed exactly
 * as this node's heartbeats are (its node key, its node id). The body is deliberately not a
 * heartbeat: the edge checks the signature against the node's registration first (401 when the node
 * is unknown or revoked, the key wrong, the timestamp stale) and only then the body (400), so a 400
 * proves the credential and the clock are right without adding the node to the pool.
 */
export async function probeEdge(edgeUrl: string, credential: NodeCredential | undefined, nowMs: () => number): Promise<EdgeProbe> {
  let health: Response;
  const sent = nowMs();
  try {
    health = await fetch(new URL("/health", edgeUrl), { signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    return { reachable: false, error: e.cause?.code ?? e.cause?.message ?? e.message };
  }
  const received = nowMs();
  const text = await health.text().catch(() => "");
  if (!health.ok) return { reachable: false, error: `GET /health answered ${health.status}` };
  let time: unknown;
  try {
    time = (JSON.parse(text) as { time?: unknown }).time;
  } catch {
    time = undefined;
  }
  // The edge's clock was read about mid-way through the round trip.
  const edgeMs = typeof time === "number" ? time : Date.parse(health.headers.get("date") ?? "");
  const skewSeconds = Number.isFinite(edgeMs) ? Math.round(((sent + received) / 2 - edgeMs) / 1000) : undefined;
  const out: EdgeProbe = { reachable: true, skewSeconds };
  if (credential === undefined) return out;

  const url = new URL("/internal/nodes/heartbeat", edgeUrl);
  const body = JSON.stringify({ doctor: "signature check; not a heartbeat" });
  const headers = await signRequest({
    method: "POST",
    path: url.pathname,
    body,
    secret: credential.nodeKey,
    signed: { [NODE_ID_HEADER]: credential.nodeId },
    timestamp: Math.floor(nowMs() / 1000),
  });
  try {
    const res = await fetch(url, { method: "POST", body, headers: { ...headers, "content-type": "application/json" }, signal: AbortSignal.timeout(10_000) });
    await res.body?.cancel();
    out.signature = res.status === 400 ? "accepted" : res.status === 401 ? "refused" : { unexpected: res.status };
  } catch (err) {
    out.signature = { unexpected: 0 };
    out.error = (err as Error).message;
  }
  return out;
}

export const MAX_SKEW_SECONDS = DEFAULT_MAX_SKEW_SECONDS;
