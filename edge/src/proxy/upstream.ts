import { BUDGET_HEADER, HEADER_REQUEST_ID, NODE_ID_HEADER, NONCE_HEADER } from "@seventy/sdk/protocol";
import { nodeKeys } from "../pool/node-keys";
import type { EdgeConfig } from "../config";
import { ApiError, retryAfterHeaders } from "../errors";
import type { PoolNode } from "../pool/node-pool";
import type { PoolView } from "../pool/view";
import { readUpTo } from "./body";
import { nodeProbe } from "./probe";
import { signForNode } from "./sign";
import { SseScanner } from "./sse";
import { addUsage, NO_USAGE, usageFromHeader, validUsage, type Spent, type TokenCount } from "./usage";

export interface ForwardInput {
  path: string;
  body: Uint8Array;
  requestId: string;
  stream: boolean;
  /** Nodes in the order to try them. */
  nodes: readonly PoolNode[];
  /** NODE_SECRET: each node's own signing key is derived from it. */
  secret: string;
  /** Signed headers for the node besides its id (the key id and cache salt the edge admitted under). */
  signed?: Record<string, string>;
  /** Tokens the request may use in all (signed into the request; the node enforces it). */
  budget: number;
  cfg: EdgeConfig;
  view: PoolView;
  /** Aborts when the client goes away (read at each tick of an attempt). */
  clientSignal?: AbortSignal;
  /** Runs at each tick of an attempt (every WATCH_MS at most while the node has not answered). */
  onTick?: (now: number) => void;
  /** A scanner for the answer's stream protocol (chat's by default), to read a stream's usage. */
  scanner?: () => SseScanner;
  /**
   * The caller needs a non-stream answer's bytes (the Responses API stores them). Otherwise an
   * answer that declares a length within MAX_RESPONSE_BYTES is passed on as the node sends it.
   */
  needsBody?: boolean;
}

interface Answered {
  ok: true;
  node: PoolNode;
  attempts: number;
  status: number;
  contentType: string | null;
  /** What the attempts so far used (failed ones included). */
  spent: Spent;
}

/**
 * A complete answer: non-stream requests, and error statuses of stream requests. Buffered, or
 * (`body` a stream) passed on as the node sends it: a non-stream answer's headers come when the
 * node has finished, with its usage, so its bytes have nothing more to tell the edge.
 */
export interface BufferedAnswer extends Answered {
  kind: "buffered";
  body: Uint8Array | ReadableStream<Uint8Array>;
}

/** A stream whose first bytes have arrived: from here on there is no failover. */
export interface StreamAnswer extends Answered {
  kind: "stream";
  reader: ReadableStreamDefaultReader<Uint8Array>;
  first: Uint8Array;
  /** Asks the node to stop this request now; it then ends the stream with its real usage. */
  stop(): Promise<boolean>;
}

export type Forwarded =
  | BufferedAnswer
  | StreamAnswer
  | { ok: false; error: ApiError; attempts: number; cancelled: boolean; spent: Spent; failures?: string };

/** How often an attempt that has no answer yet checks that its node is still in the pool. */
const WATCH_MS = 250;

type Failure = "connect" | "timeout" | "status" | "busy" | "empty" | "left" | "frozen";

/**
 * Asks `node` to stop the request signed with `nonce` (POST /v1/cancel, signed). The node then
 * ends that request's answer at once, with the usage it really generated.
 */
export async function stopOnNode(node: PoolNode, nonce: string, edgeKey: string, timeoutMs: number): Promise<boolean> {
  const body = new TextEncoder().encode(JSON.stringify({ nonce }));
  const headers = await signForNode("POST", "/v1/cancel", body, edgeKey, { [NODE_ID_HEADER]: node.id });
  try {
    const res = await fetch(`${node.url}/v1/cancel`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const json = (await res.json()) as { cancelled?: unknown };
    return res.ok && json.cancelled === true;
  } catch {
    return false;
  }
}

/** Reads a stream to its end for the usage it reports (null: none, or the stream broke). */
export async function usageOfStream(
  body: ReadableStream<Uint8Array>,
  bound: number,
  scanner: SseScanner = new SseScanner(false),
): Promise<TokenCount | null> {
  const reader = body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      scanner.push(value);
      if (scanner.overflowed) return null;
    }
  } catch {
    return null;
  }
  return validUsage(scanner.outcome.usage, bound);
}

/** The answer's Content-Length (NaN when it declares none). */
function declaredLength(res: Response): number {
  return Number(res.headers.get("content-length") ?? "NaN");
}

/** Reads an answer's body up to `max` bytes; null when it is longer (the rest is not read). */
async function readBounded(res: Response, max: number): Promise<Uint8Array | null> {
  if (!res.body) return new Uint8Array(0);
  const declared = declaredLength(res);
  if (declared > max) {
    await res.body.cancel().catch(() => undefined);
    return null;
  }
  const reader = res.body.getReader();
  const body = await readUpTo(reader, max);
  if (body === null) await reader.cancel().catch(() => undefined);
  return body;
}

/**
 * Sends a signed request to the first node of the plan that answers, and learns what every
 * attempt used.
 *
 * Failover: a connection error, a 5xx, a 429 (the node's queue is full), no response headers
 * within CONNECT_TIMEOUT_MS (streams: a live node sends them as soon as it admits the request;
 * non-stream answers: a node that sends none and does not answer /health either is frozen),
 * no first byte within UPSTREAM_TIMEOUT_MS, or the node leaving the pool moves on to the next
 * node. A non-stream answer is never re-run after REQUEST_TIMEOUT_MS: the node may have generated
 * it all. Once the first byte of a stream is in hand the answer is committed.
 *
 * Metering: a node's answer names its usage (x-seventy-usage); a node told to stop (client gone,
 * deadline) answers at once with what it generated so far. An attempt whose usage cannot be
 * learned (the node died or froze after it may have started) is marked unknown, and the caller
 * charges the whole reservation for it.
 */
export async function forward(input: ForwardInput): Promise<Forwarded> {
  const { cfg, view } = input;
  const baseHeaders: Record<string, string> = {
    "content-type": "application/json",
    accept: input.stream ? "text/event-stream" : "application/json",
    [HEADER_REQUEST_ID]: input.requestId,
  };
  const plan = input.nodes.slice(0, cfg.maxAttempts);
  const failures: Failure[] = [];
  let spent: Spent = NO_USAGE;
  let attempts = 0;

  for (const node of plan) {
    if (input.clientSignal?.aborted) break;
    attempts++;
    // Signed per node: with that node's own key and naming it, so the signature is good there only.
    const edgeKey = nodeKeys(input.secret, node.id, node.credentialId).edgeKey;
    const signed = { ...input.signed, [NODE_ID_HEADER]: node.id, [BUDGET_HEADER]: String(input.budget) };
    const signature = await signForNode("POST", input.path, input.body, edgeKey, signed);
    const nonce = signature[NONCE_HEADER]!;
    const headers = { ...baseHeaders, ...signature };
    const abort = new AbortController();
    /** Why this attempt was stopped by the edge (null: it was not). */
    let stopped: "timeout" | "client" | "left" | "connect" | "frozen" | null = null;
    let answered = false;
    let streaming = false;
    /** The attempt is over (its timers must not start anything more). */
    let over = false;
    const timers: ReturnType<typeof setTimeout>[] = [];
    // Stops the node's work and waits a moment for its answer (with its usage) before giving up.
    const stopAndDrain = (why: "timeout" | "client") => {
      if (stopped) return;
      stopped = why;
      void stopOnNode(node, nonce, edgeKey, cfg.cancelDrainMs);
      timers.push(setTimeout(() => abort.abort(), cfg.cancelDrainMs));
    };
    // Until a stream's first byte (or a non-stream's headers), a node that stops answering is left.
    const giveUp = (why: "left" | "connect" | "frozen") => {
      if (stopped || streaming || (answered && !input.stream)) return;
      stopped = why;
      abort.abort();
    };
    // The attempt's deadline: a stream's response headers (then its first byte), or a non-stream's
    // whole answer.
    let deadline = Date.now() + (input.stream ? cfg.connectTimeoutMs : cfg.requestTimeoutMs);
    let onDeadline = input.stream ? () => giveUp("connect") : () => stopAndDrain("timeout");
    // A non-stream answer sends its headers when it is done, so silence proves nothing; a node
    // that does not answer /health either is frozen, and is left within CONNECT_TIMEOUT_MS for
    // the next node (the last node of the plan is waited for: there is nothing better to do).
    const probeEvery = cfg.connectTimeoutMs / 2;
    // A node routed to although late with its heartbeats is probed even as the last of the plan.
    const wasLive = view.isLive(node.id);
    let probeAt = !input.stream && (attempts < plan.length || !wasLive) ? Date.now() + probeEvery : Infinity;
    // The next probe is due whatever becomes of this one: a probe shared with another request
    // whose invocation has ended never settles here (the runtime drops such continuations).
    const probe = () => {
      void nodeProbe.alive(node, probeEvery).then((alive) => {
        if (!alive && !over && !answered) giveUp("frozen");
      });
    };
    // One timer per attempt, which ticks every WATCH_MS at most: the deadline, the probe, a client
    // that went away (the node is told to stop), and a node that leaves the pool (heartbeats
    // stopped, drained) before answering is not waited for (one that was not in it when the
    // attempt began has its deadline and probe only). Cheaper than a listener on the request's
    // signal, and a quarter second is soon enough to stop a node.
    let ticker: ReturnType<typeof setTimeout> | undefined;
    const arm = (now: number) => {
      ticker = setTimeout(tick, Math.max(1, Math.min(WATCH_MS, deadline - now, probeAt - now)));
    };
    const tick = () => {
      if (over) return;
      const now = Date.now();
      if (input.clientSignal?.aborted) stopAndDrain("client");
      if (wasLive && !view.isLive(node.id)) giveUp("left");
      if (now >= deadline) {
        deadline = Infinity;
        onDeadline();
      }
      if (now >= probeAt) {
        probeAt = now + probeEvery;
        probe();
      }
      input.onTick?.(now);
      arm(now);
    };
    arm(Date.now());
    view.begin(node.id);
    try {
      const res = await fetch(node.url + input.path, { method: "POST", headers, body: input.body, signal: abort.signal });
      answered = true;
      const used = usageFromHeader(res.headers.get("x-seventy-usage"), input.budget);
      if (res.status >= 500 || res.status === 429) {
        await res.body?.cancel().catch(() => undefined);
        spent = addUsage(spent, used);
        failures.push(res.status === 429 ? "busy" : "status");
        view.markAlive(node.id, cfg.nodeTtlMs);
        if (stopped) break;
        continue;
      }
      const contentType = res.headers.get("content-type");
      if (input.stream && res.ok && res.body && stopped === "client") {
        // The client left before the first byte; the node was told to stop and ends the stream
        // with its usage.
        spent = addUsage(spent, await usageOfStream(res.body, input.budget, input.scanner?.()));
        break;
      }
      if (!input.stream || !res.ok || !res.body || stopped) {
        spent = addUsage(spent, used);
        view.markAlive(node.id, cfg.nodeTtlMs);
        if (!stopped && !input.stream && !input.needsBody && res.body && declaredLength(res) <= cfg.maxResponseBytes) {
          return { ok: true, kind: "buffered", node, attempts, status: res.status, contentType, body: res.body, spent };
        }
        const body = await readBounded(res, cfg.maxResponseBytes);
        if (stopped === "client") break;
        if (stopped === "timeout") {
          return { ok: false, attempts, cancelled: false, spent, error: timeoutError("The node did not finish the answer in time.") };
        }
        if (body === null) {
          return {
            ok: false,
            attempts,
            cancelled: false,
            spent,
            error: new ApiError(502, `The answer is larger than the edge passes on (${cfg.maxResponseBytes} bytes). Lower max_tokens, n or top_logprobs, or stream it.`, {
              code: "response_too_large",
            }),
          };
        }
        return { ok: true, kind: "buffered", node, attempts, status: res.status, contentType, body, spent };
      }
      // A stream: its first byte must come within UPSTREAM_TIMEOUT_MS, from a node still in the pool.
      deadline = Date.now() + cfg.upstreamTimeoutMs;
      onDeadline = () => giveUp("left");
      const reader = res.body.getReader();
      let first = await reader.read();
      while (!first.done && first.value.byteLength === 0) first = await reader.read();
      if (first.done || stopped) {
        if (!first.done) await reader.cancel().catch(() => undefined);
        // Headers but no (or no timely) body: whatever the node did is unknown.
        spent = addUsage(spent, null);
        failures.push(stopped === "left" ? "left" : "empty");
        view.eject(node.id, cfg.nodeEjectMs);
        continue;
      }
      streaming = true;
      view.markAlive(node.id, cfg.nodeTtlMs);
      return {
        ok: true,
        kind: "stream",
        node,
        attempts,
        status: res.status,
        contentType,
        reader,
        first: first.value,
        spent,
        stop: () => stopOnNode(node, nonce, edgeKey, cfg.cancelDrainMs),
      };
    } catch {
      if (stopped === "client") break;
      // A stream attempt that failed before its headers generated nothing (a node sends them when
      // it admits the request, before the first token); anything else may have.
      spent = addUsage(spent, input.stream && !answered ? NO_USAGE : null);
      if (stopped === "timeout") {
        return { ok: false, attempts, cancelled: false, spent, error: timeoutError("The node did not finish the answer in time.") };
      }
      if (stopped === "frozen") {
        // Should it wake up, it must not finish an answer nobody waits for: the closed connection
        // tells it, and so does the cancel, whichever it reads first.
        void stopOnNode(node, nonce, edgeKey, cfg.cancelDrainMs);
      }
      failures.push(stopped === "left" || stopped === "frozen" ? stopped : stopped === "connect" ? "timeout" : "connect");
      // This isolate sends to this node last for a while; the pool drops it when its heartbeats stop.
      view.eject(node.id, cfg.nodeEjectMs);
    } finally {
      over = true;
      if (ticker !== undefined) clearTimeout(ticker);
      for (const t of timers) clearTimeout(t);
      // A committed stream stays in flight until it ends; the caller ends it.
      if (!streaming) view.end(node.id);
    }
  }

  if (input.clientSignal?.aborted) {
    return {
      ok: false,
      attempts,
      cancelled: true,
      spent,
      error: new ApiError(499, "The client closed the request.", { code: "client_closed_request" }),
    };
  }
  return { ok: false, attempts, cancelled: false, spent, error: failureError(failures), failures: failures.join(",") };
}

function timeoutError(message: string): ApiError {
  return new ApiError(504, message, { code: "upstream_timeout" });
}

function failureError(failures: Failure[]): ApiError {
  const last = failures[failures.length - 1];
  if (failures.length > 0 && failures.every((f) => f === "busy")) {
    return new ApiError(503, "Every node that serves this model is busy. Please retry shortly.", {
      code: "nodes_busy",
      headers: retryAfterHeaders(1000),
    });
  }
  if (last === "timeout") return timeoutError("The node did not start answering in time.");
  return new ApiError(502, `No node could answer the request (${failures.length} tried).`, { code: "upstream_error" });
}
