import {
  CACHE_SALT_HEADER,
  KEY_ID_HEADER,
  chatCompletionRequestSchema,
  completionRequestSchema,
  zodErrorBody,
  type ChatCompletionRequest,
  type CompletionRequest,
  type Usage,
} from "@seventy/sdk/protocol";
import { Hono, type Context } from "hono";
import type { AppEnv } from "../app-env";
import { bearerToken, hashApiKey, isWellFormedKey } from "../auth/api-key";
import { config } from "../config";
import { ApiError, apiErrorFromBody, errorResponse, retryAfterHeaders } from "../errors";
import { rateLimitHeaders } from "../limits/headers";
import { limiterFor, type Admission, type KeyLimiter, type UsageReport } from "../limits/key-limiter";
import { queueRelease, returnReleases, sendReleasesNow, takeReleases } from "../limits/releases";
import { logError, logInfo } from "../log";
import { poolView } from "../pool/view";
import { parseJson, readBody } from "../proxy/body";
import { chatPrefixHash, completionPrefixHash, estimateTokens } from "../proxy/estimate";
import { meteredStream } from "../proxy/sse";
import { forward, type Forwarded } from "../proxy/upstream";

type Kind = "chat" | "completions";
type Refusal = Extract<Admission, { ok: false }>;

const PATHS: Record<Kind, string> = { chat: "/v1/chat/completions", completions: "/v1/completions" };
const NO_NODE_RETRY_MS = 2000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function refusalResponse(a: Refusal): Response {
  const headers: Record<string, string> = a.rate ? rateLimitHeaders(a.rate) : {};
  if (a.status === 429) Object.assign(headers, retryAfterHeaders(a.retryAfterMs ?? a.rate?.resetTokensMs ?? 1000));
  return errorResponse(a.status, a.message, { code: a.code, type: a.type, param: a.param ?? null }, headers);
}

function apiKeyOf(c: Context<AppEnv>): string {
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
async function authenticate(limiter: DurableObjectStub<KeyLimiter>, model: string | null): Promise<Admission & { ok: true }> {
  const a = await limiter.check(model);
  if (!a.ok) throw new RefusedError(a);
  return a;
}

class RefusedError extends Error {
  constructor(readonly admission: Refusal) {
    super(admission.message);
  }
}

function usageFromBody(body: Uint8Array): Usage | null {
  try {
    const parsed = JSON.parse(decoder.decode(body)) as { usage?: Usage | null };
    return parsed.usage ?? null;
  } catch {
    return null;
  }
}

/**
 * POST /v1/chat/completions and /v1/completions: authenticate, validate, route, admit, forward
 * (with failover), pass the answer through, and settle the key's lease with the real usage.
 */
async function complete(c: Context<AppEnv>, kind: Kind): Promise<Response> {
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
    let json: Record<string, unknown>;
    let req: ChatCompletionRequest | CompletionRequest;
    try {
      const raw = parseJson(body);
      const result = kind === "chat" ? chatCompletionRequestSchema.safeParse(raw) : completionRequestSchema.safeParse(raw);
      if (!result.success) throw apiErrorFromBody(400, zodErrorBody(result.error));
      json = raw as Record<string, unknown>;
      req = result.data;
    } catch (err) {
      await authenticate(limiter, null);
      throw err;
    }
    const model = req.model;

    // Route before admitting, so a request no node can take does not use up the key's limits.
    await poolView.ensureFresh(env, cfg, (p) => ctx.waitUntil(p));
    const prefixHash =
      kind === "chat"
        ? chatPrefixHash(req as ChatCompletionRequest, cfg.affinityPrefixChars)
        : completionPrefixHash(req as CompletionRequest, cfg.affinityPrefixChars);
    let route = poolView.route(model, prefixHash);
    if (!route.ok && !poolView.freshWithin(250)) {
      await poolView.refresh(env);
      route = poolView.route(model, prefixHash);
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

    const estimate = estimateTokens(body.byteLength, req, cfg.defaultMaxTokens);
    // Finished requests of this key ride along with the admission (see limits/releases.ts).
    const carried = takeReleases(keyHash);
    let admission: Admission;
    try {
      admission = await limiter.admit(model, estimate.total, cfg.leaseTtlMs, carried);
    } catch (err) {
      returnReleases(keyHash, carried);
      throw err;
    }
    if (!admission.ok) throw new RefusedError(admission);
    const rateHeaders = rateLimitHeaders(admission.rate);

    // The lease is settled exactly once. Registered now, while the request is surely alive, this
    // keeps the invocation running until the release has been handed on, even if the client goes.
    let settle!: () => void;
    ctx.waitUntil(new Promise<void>((resolve) => (settle = resolve)));
    let released = false;
    const release = (
      usage: UsageReport,
      fields: Record<string, string | number | boolean | null>,
      clientGone = false,
    ) => {
      if (released) return;
      released = true;
      const lease = { leaseId: admission.leaseId, usage };
      if (clientGone) {
        void sendReleasesNow(env, keyHash, lease).finally(settle);
      } else {
        queueRelease(env, keyHash, lease, (p) => ctx.waitUntil(p));
        settle();
      }
      if (cfg.logRequests || usage.error) {
        (usage.error ? logError : logInfo)("request", {
          request_id: requestId,
          key_id: admission.keyId,
          model,
          stream: req.stream === true,
          prompt_tokens: usage.promptTokens,
          completion_tokens: usage.completionTokens,
          ms: Date.now() - started,
          ...fields,
        });
      }
    };

    const stream = req.stream === true;
    const clientWantsUsage = req.stream_options?.include_usage === true;
    // Always ask the node for usage; the usage chunk is stripped again if the client did not ask.
    const upstreamBody =
      stream && !clientWantsUsage
        ? encoder.encode(
            JSON.stringify({ ...json, stream_options: { ...(json.stream_options as object | null), include_usage: true } }),
          )
        : body;

    let fwd: Forwarded;
    try {
      fwd = await forward({
        path: PATHS[kind],
        body: upstreamBody,
        requestId,
        stream,
        nodes: route.nodes,
        secret: env.NODE_SECRET,
        signed: { [KEY_ID_HEADER]: admission.keyId, [CACHE_SALT_HEADER]: admission.cacheSalt },
        cfg,
        view: poolView,
        clientSignal: c.req.raw.signal,
      });
    } catch (err) {
      release({ promptTokens: 0, completionTokens: 0, error: true }, { status: 500 });
      throw err;
    }
    if (!fwd.ok) {
      // A client that left before any answer still used the prompt on whichever node started it.
      release(
        { promptTokens: fwd.cancelled ? estimate.prompt : 0, completionTokens: 0, error: !fwd.cancelled },
        { status: fwd.error.status, attempts: fwd.attempts, code: fwd.error.code },
        fwd.cancelled,
      );
      return fwd.error.toResponse(rateHeaders);
    }

    const headers = new Headers(rateHeaders);
    headers.set("x-seventy-node", fwd.node.id);
    if (fwd.kind === "buffered") {
      const usage = fwd.status < 400 ? usageFromBody(fwd.body) : null;
      release(
        {
          promptTokens: usage?.prompt_tokens ?? (fwd.status < 400 ? estimate.prompt : 0),
          completionTokens: usage?.completion_tokens ?? (fwd.status < 400 ? estimate.total - estimate.prompt : 0),
          cachedTokens: usage?.prompt_tokens_details?.cached_tokens ?? 0,
          error: fwd.status >= 400,
        },
        { status: fwd.status, node: fwd.node.id, attempts: fwd.attempts },
      );
      headers.set("content-type", fwd.contentType ?? "application/json");
      return new Response(fwd.body, { status: fwd.status, headers });
    }

    const node = fwd.node;
    const out = meteredStream({
      reader: fwd.reader,
      first: fwd.first,
      stripUsage: !clientWantsUsage,
      idleTimeoutMs: cfg.streamIdleTimeoutMs,
      onEnd: (o) => {
        poolView.end(node.id);
        release(
          {
            promptTokens: o.usage?.prompt_tokens ?? estimate.prompt,
            completionTokens: o.usage?.completion_tokens ?? o.chunks,
            cachedTokens: o.usage?.prompt_tokens_details?.cached_tokens ?? 0,
            error: !o.cancelled && (o.errored || !o.completed),
          },
          {
            status: fwd.status,
            node: node.id,
            attempts: fwd.attempts,
            outcome: o.cancelled ? "client_cancelled" : o.completed && !o.errored ? "completed" : "cut_off",
          },
          o.cancelled,
        );
      },
    });
    headers.set("content-type", fwd.contentType ?? "text/event-stream");
    headers.set("cache-control", "no-cache");
    // Workers would otherwise compress the stream and buffer it in the process.
    headers.set("content-encoding", "identity");
    return new Response(out, { status: fwd.status, headers });
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
  .post("/chat/completions", (c) => complete(c, "chat"))
  .post("/completions", (c) => complete(c, "completions"))
  .get("/models", listModels);
