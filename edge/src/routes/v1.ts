import {
  CACHE_SALT_HEADER,
  KEY_ID_HEADER,
  chatCompletionRequestSchema,
  completionRequestSchema,
  zodErrorBody,
  type ChatCompletionRequest,
  type CompletionRequest,
} from "@seventy/sdk/protocol";
import { Hono, type Context } from "hono";
import type { AppEnv } from "../app-env";
import { bearerToken, hashApiKey, isWellFormedKey } from "../auth/api-key";
import { config, type EdgeConfig } from "../config";
import { ApiError, apiErrorFromBody, errorResponse, retryAfterHeaders } from "../errors";
import { rateLimitHeaders } from "../limits/headers";
import { limiterFor, type Admission, type KeyLimiter } from "../limits/key-limiter";
import { RequestMeter } from "../limits/meter";
import { returnReleases, takeReleases } from "../limits/releases";
import { reservationFor, type Reservation } from "../limits/reservation";
import { poolView } from "../pool/view";
import { parseJson, readBody } from "../proxy/body";
import { chatPrefixHash, completionPrefixHash } from "../proxy/prefix";
import { meteredStream, SseScanner, type MeteredStreamOptions } from "../proxy/sse";
import { forward, type Forwarded } from "../proxy/upstream";
import { addUsage, NO_USAGE, validUsage } from "../proxy/usage";

type Refusal = Extract<Admission, { ok: false }>;

/**
 * One API the edge proxies (chat completions, completions, the Responses API): how to read its
 * requests and answers. `complete` runs every one through the same authenticate → route → reserve
 * → forward → meter pipeline.
 */
export interface ProxiedApi {
  /** The path on the node. */
  path: string;
  /**
   * Validates a parsed body (throwing an ApiError) into what routing, limits and forwarding need.
   * Whatever it throws is answered after authentication, so a bad key is a 401 first.
   */
  prepare(raw: unknown, body: Uint8Array, c: Context<AppEnv>, keyHash: string, cfg: EdgeConfig): Promise<ProxiedRequest>;
}

export interface ProxiedRequest {
  model: string;
  stream: boolean;
  /** For prefix affinity. */
  prefixHash: number;
  /** The most the request may use on nodes whose context is `maxModelLen` (see `reservationFor`). */
  reservation(defaultMaxTokens: number, maxModelLen: number): Reservation;
  /** The body sent to nodes. */
  upstreamBody: Uint8Array;
  /** Streams: drop the usage-only chunk (the client did not ask for it). */
  stripUsage: boolean;
  /** Streams of another protocol than chat's (the Responses API's events). */
  streamProtocol?: {
    /** The scanner and cut-off event of the stream passed on to the client. */
    metered: NonNullable<MeteredStreamOptions["protocol"]>;
    /** A fresh scanner, to read the usage of a stream nobody receives (the client left before it began). */
    scanner(): SseScanner;
  };
  /** Runs on a successful answer before it is passed on (the Responses API stores it). */
  onAnswer?: {
    buffered(body: Uint8Array): Promise<void>;
    stream(out: ReadableStream<Uint8Array>): ReadableStream<Uint8Array>;
  };
}

const NO_NODE_RETRY_MS = 2000;
const encoder = new TextEncoder();

export function refusalResponse(a: Refusal): Response {
  const headers: Record<string, string> = a.rate ? rateLimitHeaders(a.rate) : {};
  if (a.status === 429) Object.assign(headers, retryAfterHeaders(a.retryAfterMs ?? a.rate?.resetTokensMs ?? 1000));
  return errorResponse(a.status, a.message, { code: a.code, type: a.type, param: a.param ?? null }, headers);
}

export function apiKeyOf(c: Context<AppEnv>): string {
  const key = bearerToken(c.req.header("authorization"));
  if (!key) {
    throw new ApiError(401, "You didn't provide an API key. Send it as 'Authorization: Bearer sk-...'.", {
      code: "missing_api_key",
    });
  }
  if (!isWellFormedKey(key)) throw new ApiError(401, "Incorrect API key provided.", { code: "invalid_api_key" });
  return key;
}

/** Authentication without admission, for requests refused before they would be admitted. */
export async function authenticate(limiter: DurableObjectStub<KeyLimiter>, model: string | null): Promise<Admission & { ok: true }> {
  const a = await limiter.check(model);
  if (!a.ok) throw new RefusedError(a);
  return a;
}

export class RefusedError extends Error {
  constructor(readonly admission: Refusal) {
    super(admission.message);
  }
}

const USAGE_OPTION = encoder.encode('"stream_options":{"include_usage":true},');

function isJsonSpace(b: number | undefined): boolean {
  return b === 0x20 || b === 0x0a || b === 0x0d || b === 0x09;
}

/**
 * The body with `stream_options.include_usage` set. A body without `stream_options` (the usual
 * case) gets the member spliced in after its opening brace, so the body is not serialized again;
 * one that has the field is rebuilt from its parsed form.
 */
export function withUsageRequested(raw: Record<string, unknown>, body: Uint8Array): Uint8Array {
  if (!Object.hasOwn(raw, "stream_options")) {
    let open = 0;
    while (isJsonSpace(body[open])) open++;
    let next = open + 1;
    while (isJsonSpace(body[next])) next++;
    // A validated request has members (model...), so a comma after the new one is always right.
    if (body[open] === 0x7b && next < body.length && body[next] !== 0x7d) {
      const out = new Uint8Array(body.byteLength + USAGE_OPTION.byteLength);
      out.set(body.subarray(0, open + 1), 0);
      out.set(USAGE_OPTION, open + 1);
      out.set(body.subarray(open + 1), open + 1 + USAGE_OPTION.byteLength);
      return out;
    }
  }
  return encoder.encode(JSON.stringify({ ...raw, stream_options: { ...(raw.stream_options as object | null), include_usage: true } }));
}

/** Chat completions and completions: the body as the client sent it, usage always asked of the node. */
function openAIRequest(
  req: ChatCompletionRequest | CompletionRequest,
  raw: Record<string, unknown>,
  body: Uint8Array,
  prefixHash: number,
): ProxiedRequest {
  const stream = req.stream === true;
  const clientWantsUsage = req.stream_options?.include_usage === true;
  // Always ask the node for usage; the usage chunk is stripped again if the client did not ask.
  const upstreamBody = stream && !clientWantsUsage ? withUsageRequested(raw, body) : body;
  return {
    model: req.model,
    stream,
    prefixHash,
    reservation: (defaultMaxTokens, maxModelLen) =>
      reservationFor(body.byteLength, req as CompletionRequest & ChatCompletionRequest, defaultMaxTokens, maxModelLen),
    upstreamBody,
    stripUsage: !clientWantsUsage,
  };
}

const chatApi: ProxiedApi = {
  path: "/v1/chat/completions",
  async prepare(raw, body, _c, _keyHash, cfg) {
    const result = chatCompletionRequestSchema.safeParse(raw);
    if (!result.success) throw apiErrorFromBody(400, zodErrorBody(result.error));
    return openAIRequest(result.data, raw as Record<string, unknown>, body, chatPrefixHash(result.data, cfg.affinityPrefixChars));
  },
};

const completionsApi: ProxiedApi = {
  path: "/v1/completions",
  async prepare(raw, body, _c, _keyHash, cfg) {
    const result = completionRequestSchema.safeParse(raw);
    if (!result.success) throw apiErrorFromBody(400, zodErrorBody(result.error));
    return openAIRequest(result.data, raw as Record<string, unknown>, body, completionPrefixHash(result.data, cfg.affinityPrefixChars));
  },
};

/**
 * POST /v1/chat/completions, /v1/completions and /v1/responses: authenticate, validate, route,
 * reserve, forward (with failover), pass the answer through, and end the request through its
 * meter: one path, whatever ends it.
 */
export async function complete(c: Context<AppEnv>, api: ProxiedApi): Promise<Response> {
  const started = Date.now();
  const env = c.env;
  const cfg = config(env);
  const ctx = c.executionCtx;
  const requestId = c.get("requestId");
  const apiKey = apiKeyOf(c);
  const keyHash = hashApiKey(apiKey);
  const body = await readBody(c.req.raw, cfg.maxBodyBytes);
  const limiter = limiterFor(env, keyHash);

  try {
    // Parse; an invalid body is still answered 401 first when the key is bad.
    let req: ProxiedRequest;
    try {
      req = await api.prepare(parseJson(body), body, c, keyHash, cfg);
    } catch (err) {
      await authenticate(limiter, null);
      throw err;
    }
    const model = req.model;

    // Route before admitting, so a request no node can take does not use up the key's limits.
    await poolView.ensureFresh(env, cfg, (p) => ctx.waitUntil(p));
    const prefixHash = req.prefixHash;
    let route = poolView.route(model, prefixHash, undefined, cfg.nodeTtlMs);
    if (!route.ok && !poolView.freshWithin(250)) {
      await poolView.refresh(env);
      route = poolView.route(model, prefixHash, undefined, cfg.nodeTtlMs);
    }
    if (!route.ok) {
      const auth = await authenticate(limiter, model);
      const headers = rateLimitHeaders(auth.rate);
      if (route.status === 503) Object.assign(headers, retryAfterHeaders(NO_NODE_RETRY_MS));
      throw new ApiError(route.status, route.message, { code: route.code, param: route.status === 404 ? "model" : null, headers });
    }
    if (!env.NODE_SECRET) {
      throw new ApiError(503, "The edge has no NODE_SECRET to sign requests with.", { code: "edge_misconfigured" });
    }

    // The reservation is the limit: the node is told it (signed) and cannot generate past it.
    let maxModelLen = 0;
    for (const n of route.nodes) maxModelLen = Math.max(maxModelLen, n.capacity.max_model_len);
    const reservation = req.reservation(cfg.defaultMaxTokens, maxModelLen);
    // Finished requests of this key ride along with the admission (see limits/releases.ts).
    const carried = takeReleases(keyHash);
    let admission: Admission;
    try {
      admission = await limiter.admit(model, reservation.total, cfg.leaseTtlMs, carried);
    } catch (err) {
      returnReleases(keyHash, carried);
      throw err;
    }
    if (!admission.ok) throw new RefusedError(admission);
    const rateHeaders = rateLimitHeaders(admission.rate);
    const stream = req.stream;
    const meter = new RequestMeter(env, cfg, ctx, keyHash, admission.leaseId, reservation, {
      request_id: requestId,
      key_id: admission.keyId,
      model,
      stream,
      reserved_tokens: reservation.total,
    });
    const ms = () => Date.now() - started;

    let fwd: Forwarded;
    try {
      fwd = await forward({
        path: api.path,
        body: req.upstreamBody,
        requestId,
        stream,
        nodes: route.nodes,
        secret: env.NODE_SECRET,
        signed: { [KEY_ID_HEADER]: admission.keyId, [CACHE_SALT_HEADER]: admission.cacheSalt },
        budget: reservation.total,
        cfg,
        view: poolView,
        clientSignal: c.req.raw.signal,
        scanner: req.streamProtocol?.scanner,
        needsBody: req.onAnswer !== undefined,
        onTick: (now) => meter.renewIfDue(now),
      });
    } catch (err) {
      meter.end({ spent: { ...NO_USAGE, unknown: true }, error: true, log: { status: 500, ms: ms() } });
      throw err;
    }
    if (!fwd.ok) {
      meter.end({
        spent: fwd.spent,
        error: !fwd.cancelled,
        clientGone: fwd.cancelled,
        log: { status: fwd.error.status, attempts: fwd.attempts, code: fwd.error.code, failures: fwd.failures, ms: ms() },
      });
      return fwd.error.toResponse(rateHeaders);
    }

    // One plain object, turned into the response's headers once.
    const headers: Record<string, string> = rateHeaders;
    headers["x-seventy-node"] = fwd.node.id;
    if (fwd.kind === "buffered") {
      meter.end({
        spent: fwd.spent,
        error: fwd.status >= 400,
        log: { status: fwd.status, node: fwd.node.id, attempts: fwd.attempts, ms: ms() },
      });
      if (fwd.status < 400 && fwd.body instanceof Uint8Array) await req.onAnswer?.buffered(fwd.body);
      headers["content-type"] = fwd.contentType ?? "application/json";
      return new Response(fwd.body, { status: fwd.status, headers });
    }

    const answer = fwd;
    const out = meteredStream({
      reader: answer.reader,
      first: answer.first,
      stripUsage: req.stripUsage,
      protocol: req.streamProtocol?.metered,
      idleTimeoutMs: cfg.streamIdleTimeoutMs,
      keepAliveMs: cfg.streamKeepAliveMs,
      maxStreamMs: cfg.maxStreamMs,
      maxEventBytes: cfg.maxEventBytes,
      drainMs: cfg.cancelDrainMs,
      clientSignal: c.req.raw.signal,
      clientIdleMs: cfg.streamIdleTimeoutMs,
      stop: answer.stop,
      onTick: (now) => meter.renewIfDue(now),
      onEnd: (o) => {
        poolView.end(answer.node.id);
        meter.end({
          spent: addUsage(answer.spent, validUsage(o.usage, reservation.total)),
          error: !o.cancelled && (o.errored || !o.completed),
          clientGone: o.cancelled,
          log: {
            status: answer.status,
            node: answer.node.id,
            attempts: answer.attempts,
            outcome: o.cancelled ? "client_cancelled" : o.completed && !o.errored ? "completed" : "cut_off",
            ms: ms(),
          },
        });
      },
    });
    headers["content-type"] = answer.contentType ?? "text/event-stream";
    headers["cache-control"] = "no-cache";
    // Workers would otherwise compress the stream and buffer it in the process.
    headers["content-encoding"] = "identity";
    return new Response(req.onAnswer?.stream(out) ?? out, { status: answer.status, headers });
  } catch (err) {
    if (err instanceof RefusedError) return refusalResponse(err.admission);
    throw err;
  }
}

/** GET /v1/models: what the pool serves now, as far as this key may use it. */
async function listModels(c: Context<AppEnv>): Promise<Response> {
  const env = c.env;
  const cfg = config(env);
  const limiter = limiterFor(env, hashApiKey(apiKeyOf(c)));
  try {
    const auth = await authenticate(limiter, null);
    await poolView.ensureFresh(env, cfg, (p) => c.executionCtx.waitUntil(p));
    const data = poolView.models().filter((m) => auth.models === null || auth.models.includes(m.id));
    return c.json({ object: "list", data }, 200, rateLimitHeaders(auth.rate));
  } catch (err) {
    if (err instanceof RefusedError) return refusalResponse(err.admission);
    throw err;
  }
}

export const v1 = new Hono<AppEnv>()
  .post("/chat/completions", (c) => complete(c, chatApi))
  .post("/completions", (c) => complete(c, completionsApi))
  .get("/models", listModels);
