import { HEADER_REQUEST_ID, NODE_ID_HEADER } from "@seventy/sdk/protocol";
import { nodeKeys } from "../pool/node-keys";
import type { EdgeConfig } from "../config";
import { ApiError, retryAfterHeaders } from "../errors";
import type { PoolNode } from "../pool/node-pool";
import type { PoolView } from "../pool/view";
import { signForNode } from "./sign";

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
  cfg: EdgeConfig;
  view: PoolView;
  /** Aborts when the client goes away. */
  clientSignal?: AbortSignal;
}

interface Answered {
  ok: true;
  node: PoolNode;
  attempts: number;
  status: number;
  contentType: string | null;
}

/** A complete, buffered answer (non-stream requests, and error statuses of stream requests). */
export interface BufferedAnswer extends Answered {
  kind: "buffered";
  body: Uint8Array;
}

/** A stream whose first bytes have arrived: from here on there is no failover. */
export interface StreamAnswer extends Answered {
  kind: "stream";
  reader: ReadableStreamDefaultReader<Uint8Array>;
  first: Uint8Array;
}

export type Forwarded = BufferedAnswer | StreamAnswer | { ok: false; error: ApiError; attempts: number; cancelled: boolean };

type Failure = "connect" | "timeout" | "status" | "busy" | "empty";

/**
 * Sends a signed request to the first node of the plan that answers. A connection error, a 5xx,
 * a 429 (the node's queue is full) or no first byte within UPSTREAM_TIMEOUT_MS moves on to the
 * next node; once the first byte of a stream is in hand the answer is committed. Non-stream
 * answers are read whole before anything is sent, so they can fail over at any point.
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
  let attempts = 0;

  for (const node of plan) {
    if (input.clientSignal?.aborted) break;
    attempts++;
    // The timer covers the time to the first byte only: it is cleared once the answer is in hand.
    const abort = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      abort.abort();
    }, cfg.upstreamTimeoutMs);
    const onClientGone = () => abort.abort();
    input.clientSignal?.addEventListener("abort", onClientGone);
    view.begin(node.id);
    let streaming = false;
    try {
      // Signed per node: with that node's own key and naming it, so the signature is good there only.
      const edgeKey = nodeKeys(input.secret, node.id, node.credentialId).edgeKey;
      const signature = await signForNode("POST", input.path, input.body, edgeKey, { ...input.signed, [NODE_ID_HEADER]: node.id });
      const headers = { ...baseHeaders, ...signature };
      const res = await fetch(node.url + input.path, {
        method: "POST",
        headers,
        body: input.body,
        signal: abort.signal,
      });
      if (res.status >= 500 || res.status === 429) {
        await res.body?.cancel().catch(() => undefined);
        failures.push(res.status === 429 ? "busy" : "status");
        continue;
      }
      const contentType = res.headers.get("content-type");
      if (!input.stream || !res.ok || !res.body) {
        const body = new Uint8Array(await res.arrayBuffer());
        return { ok: true, kind: "buffered", node, attempts, status: res.status, contentType, body };
      }
      const reader = res.body.getReader();
      let first = await reader.read();
      while (!first.done && first.value.byteLength === 0) first = await reader.read();
      if (first.done) {
        failures.push("empty");
        continue;
      }
      streaming = true;
      return { ok: true, kind: "stream", node, attempts, status: res.status, contentType, reader, first: first.value };
    } catch {
      if (input.clientSignal?.aborted) break;
      failures.push(timedOut ? "timeout" : "connect");
      // This isolate stops sending to a node it cannot reach; the pool drops it when its heartbeats stop.
      view.eject(node.id, cfg.nodeEjectMs);
    } finally {
      clearTimeout(timer);
      input.clientSignal?.removeEventListener("abort", onClientGone);
      // A committed stream stays in flight until it ends; the caller ends it.
      if (!streaming) view.end(node.id);
    }
  }

  if (input.clientSignal?.aborted) {
    return { ok: false, attempts, cancelled: true, error: new ApiError(499, "The client closed the request.", { code: "client_closed_request" }) };
  }
  return { ok: false, attempts, cancelled: false, error: failureError(failures) };
}

function failureError(failures: Failure[]): ApiError {
  const last = failures[failures.length - 1];
  if (failures.length > 0 && failures.every((f) => f === "busy")) {
    return new ApiError(503, "Every node that serves this model is busy. Please retry shortly.", {
      code: "nodes_busy",
      headers: retryAfterHeaders(1000),
    });
  }
  if (last === "timeout") {
    return new ApiError(504, "The node did not start answering in time.", { code: "upstream_timeout" });
  }
  return new ApiError(502, `No node could answer the request (${failures.length} tried).`, { code: "upstream_error" });
}
