import type { AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import { Hono, type Context } from "hono";
import { DEFAULT_MAX_BODY_BYTES, nodeCredential, untilSignable } from "../node.js";
import { readBody, type NodeEnv } from "../server/app.js";
import { startHeartbeat } from "../server/heartbeat.js";
import { HttpError } from "../server/http-error.js";
import { loopbackGuard } from "../server/loopback-guard.js";
import { SignatureVerifier, signableFrom } from "../server/signature.js";
import { forward } from "./proxy.js";
import { probeUpstream, type UpstreamState } from "./probe.js";

export interface UpstreamNodeOptions {
  /** Base URL of the engine's OpenAI-compatible server, e.g. http://127.0.0.1:8000 (vLLM's default). */
  upstream: string;
  /** The engine's own API key (vLLM `--api-key`), if it has one. */
  apiKey?: string;
  host?: string;
  port?: number;
  /**
   * This node's credential from the edge's admin API (`snc1.…`, SEVENTY_NODE_CREDENTIAL), as a
   * native node takes it: required to listen on anything but loopback and to join an edge.
   */
  credential?: string;
  edgeUrl?: string;
  nodeId?: string;
  publicUrl?: string;
  heartbeatIntervalMs?: number;
  /** Advertised to the edge as the node's sequence slots (default 256, vLLM's default). */
  maxNumSeqs?: number;
  /** Used when the engine does not report its own `max_model_len`. */
  maxModelLen?: number;
  /** Request body limit; default: a native node's (the edge's limit plus what the edge adds). */
  maxBodyBytes?: number;
  /** Open client connections at most; more are closed at once. Default maxNumSeqs + 64. */
  maxConnections?: number;
  /** How long to wait for the engine to answer `/v1/models` at start (a 70B model loads for minutes). */
  startupTimeoutMs?: number;
  log?: (line: string) => void;
}

export interface RunningUpstreamNode {
  url: string;
  port: number;
  modelName: string;
  maxModelLen: number;
  /** The last probe of the engine. */
  state(): UpstreamState;
  drain(graceMs?: number): Promise<void>;
  close(): Promise<void>;
}

const REQUEST_ID_RE = /^[\w.:\-]{1,128}$/;

/**
 * A node that fronts an engine already running on the box (vLLM, SGLang, TensorRT-LLM, llama.cpp's
 * server): it checks the edge's signatures with its own credential exactly as a native node does
 * (headers before the body, the same body limit; loopback only and browser-proof without one),
 * passes requests and SSE streams through, puts the engine's errors in OpenAI's shape, and joins
 * the pool with heartbeats signed with its node key, carrying the engine's model id and the load
 * read from its Prometheus metrics.
 */
export async function startUpstreamNode(opts: UpstreamNodeOptions): Promise<RunningUpstreamNode> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const host = opts.host ?? "127.0.0.1";
  const upstream = opts.upstream;
  const intervalMs = opts.heartbeatIntervalMs ?? 2000;
  const credential = nodeCredential({ ...opts, host });

  // Wait for the engine: it may still be loading weights.
  const deadline = Date.now() + (opts.startupTimeoutMs ?? 600_000);
  let state = await probeUpstream(upstream, { apiKey: opts.apiKey });
  if (!state.up) log(`waiting for the model server at ${upstream} (${state.error})`);
  while (!state.up) {
    if (Date.now() > deadline) throw new Error(`the model server at ${upstream} did not answer /v1/models (${state.error}); is it running, and is --upstream right?`);
    await new Promise((r) => setTimeout(r, 1000));
    state = await probeUpstream(upstream, { apiKey: opts.apiKey });
  }
  const modelName = state.modelId!;
  const maxModelLen = state.maxModelLen ?? opts.maxModelLen ?? 8192;

  const startedAt = Date.now();
  const verifier = credential ? new SignatureVerifier(credential, signableFrom(startedAt)) : null;
  const maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const maxNumSeqs = opts.maxNumSeqs ?? 256;
  let draining = false;
  let inFlight = 0;
  let idle: (() => void) | null = null;
  const finished = () => {
    inFlight--;
    if (inFlight === 0) idle?.();
  };

  const app = new Hono<NodeEnv>();
  app.use("*", async (c, next) => {
    const given = c.req.header("x-request-id");
    c.set("requestId", given && REQUEST_ID_RE.test(given) ? given : crypto.randomUUID());
    await next();
  });
  // Without a credential the node serves anyone who can reach it: only loopback, and never a browser page.
  if (!verifier) app.use("*", loopbackGuard());

  const pass = async (c: Context<NodeEnv>, method: string) => {
    if (draining) throw new HttpError(503, "This node is draining and takes no new requests.", { code: "node_draining", headers: { "retry-after": "1" } });
    // Unsigned, stale or misaddressed requests are refused before a byte of their body is read.
    verifier?.precheck(c.req.raw);
    const body = method === "POST" ? await readBody(c, maxBodyBytes) : new Uint8Array(0);
    if (verifier) await verifier.verify(c.req.raw, body);
    inFlight++;
    const url = new URL(c.req.url);
    return forward({
      upstream,
      path: url.pathname + url.search,
      method,
      body,
      signal: c.req.raw.signal,
      requestId: c.get("requestId"),
      apiKey: opts.apiKey,
      onDone: finished,
    });
  };
  app.post("/v1/*", (c) => pass(c, "POST"));
  app.post("/tokenize", (c) => pass(c, "POST"));
  app.post("/detokenize", (c) => pass(c, "POST"));
  app.get("/v1/models", (c) => pass(c, "GET"));

  app.get("/health", (c) =>
    c.json({
      status: draining ? "draining" : state.up ? "ok" : "upstream_down",
      model: modelName,
      engine: "upstream",
      upstream_up: state.up,
      in_flight: inFlight,
      running: state.load?.running ?? inFlight,
      waiting: state.load?.waiting ?? 0,
      kv_usage: state.load?.kvUsage ?? 0,
      max_model_len: maxModelLen,
    }),
  );
  // The engine's own metrics, so one scrape target per box is enough.
  app.get("/metrics", async () => {
    const res = await fetch(new URL("/metrics", upstream), { signal: AbortSignal.timeout(5000) }).catch(() => null);
    if (!res?.ok) return new HttpError(502, "The model server has no /metrics.", { code: "upstream_error" }).toResponse();
    return new Response(res.body, { headers: { "content-type": res.headers.get("content-type") ?? "text/plain" } });
  });
  app.notFound((c) => new HttpError(404, `No route for ${c.req.method} ${new URL(c.req.url).pathname}.`, { code: "not_found" }).toResponse());
  app.onError((err) => {
    if (err instanceof HttpError) return err.toResponse();
    console.error(`[gpu-node] internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return new HttpError(500, "Internal server error.", { code: "internal_error" }).toResponse();
  });

  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: opts.port ?? 8100 }, () => resolve(s));
    s.once("error", reject);
  });
  // Bounded connections, and bounded time to send a request, as on a native node.
  const http = server as import("node:http").Server;
  http.maxConnections = opts.maxConnections ?? maxNumSeqs + 64;
  http.headersTimeout = 10_000;
  http.requestTimeout = 30_000;
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  if (credential) await untilSignable(startedAt);

  // Each beat reports what the last probe saw; an engine that stops answering takes the node out of
  // rotation (reported as draining) until it answers again.
  let lastDown = "";
  const probeTimer = setInterval(() => {
    void probeUpstream(upstream, { apiKey: opts.apiKey, timeoutMs: Math.max(500, intervalMs) }).then((s) => {
      state = s;
      const down = s.up ? "" : `the model server at ${upstream} is not answering (${s.error}); the node is out of rotation`;
      if (down && down !== lastDown) log(`[gpu-node] ${down}`);
      if (!down && lastDown) log(`[gpu-node] the model server at ${upstream} answers again`);
      lastDown = down;
    });
  }, intervalMs);
  probeTimer.unref();

  const heartbeat = opts.edgeUrl
    ? startHeartbeat({
        edgeUrl: opts.edgeUrl,
        credential: credential!,
        intervalMs,
        onError: (m) => log(`[gpu-node] ${m}`),
        report: () => ({
          node_id: credential!.nodeId,
          url: opts.publicUrl ?? url,
          models: [modelName],
          engine: "upstream",
          capacity: { max_num_seqs: maxNumSeqs, kv_blocks_total: 0, max_model_len: maxModelLen },
          // Without load gauges (TensorRT-LLM), what this node has in flight is the load.
          load: state.load
            ? { running: state.load.running, waiting: state.load.waiting, kv_usage: state.load.kvUsage }
            : { running: inFlight, waiting: 0, kv_usage: 0 },
          draining: draining || !state.up,
        }),
      })
    : null;

  let closed = false;
  const running: RunningUpstreamNode = {
    url,
    port,
    modelName,
    maxModelLen,
    state: () => state,
    async drain(graceMs = 60_000) {
      draining = true;
      await heartbeat?.beat();
      if (inFlight > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([new Promise<void>((r) => (idle = r)), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
        clearTimeout(timer);
      }
      await running.close();
    },
    async close() {
      if (closed) return;
      closed = true;
      clearInterval(probeTimer);
      heartbeat?.stop();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
    },
  };
  return running;
}
