import {
  responseCreateRequestSchema,
  zodErrorBody,
  type ResponseCreateRequest,
  type ResponseItem,
  type ResponseObject,
} from "@seventy/sdk/protocol";
import type { Context } from "hono";
import type { AppEnv } from "../app-env";
import { hashApiKey } from "../auth/api-key";
import { config } from "../config";
import { ApiError, apiErrorFromBody, retryAfterHeaders } from "../errors";
import { rateLimitHeaders } from "../limits/headers";
import { limiterFor, type Admission, type UsageReport } from "../limits/key-limiter";
import { queueRelease, returnReleases, sendReleasesNow, takeReleases } from "../limits/releases";
import { logError, logInfo } from "../log";
import { poolView } from "../pool/view";
import { parseJson, readBody } from "../proxy/body";
import { estimateTokens } from "../proxy/estimate";
import { meteredStream } from "../proxy/sse";
import { forward, type Forwarded } from "../proxy/upstream";
import { apiKeyOf, authenticate, RefusedError, refusalResponse } from "../routes/v1";
import { responsesPrefixHash, storedItems } from "./items";
import { responseStoreFor, storeLimits } from "./store";
import { ResponsesScanner } from "./stream";

const PATH = "/v1/responses";
const NO_NODE_RETRY_MS = 2000;
/** The most conversation (JSON bytes) previous_response_id may bring along to a node. */
const MAX_PREVIOUS_BYTES = 4 << 20;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Validates the body and resolves previous_response_id into the stored conversation before it. */
async function prepare(
  c: Context<AppEnv>,
  body: Uint8Array,
  keyHash: string,
): Promise<{ req: ResponseCreateRequest; json: Record<string, unknown>; previous: ResponseItem[] | null }> {
  const raw = parseJson(body) as Record<string, unknown>;
  const result = responseCreateRequestSchema.safeParse(raw);
  if (!result.success) throw apiErrorFromBody(400, zodErrorBody(result.error));
  const req = result.data;
  if (req.previous_items !== undefined) {
    throw new ApiError(400, "Unknown parameter: 'previous_items'. Continue a conversation with 'previous_response_id'.", {
      param: "previous_items",
      code: "unknown_parameter",
    });
  }
  if (req.previous_response_id === undefined) return { req, json: raw, previous: null };
  // Only a key that works may look into its store (and no stray key creates one).
  await authenticate(limiterFor(c.env, keyHash), req.model);
  const found = await responseStoreFor(c.env, keyHash).conversation(req.previous_response_id, storeLimits(c.env), MAX_PREVIOUS_BYTES);
  if (!found.ok) {
    throw new ApiError(
      400,
      found.reason === "not_found"
        ? `Previous response with id '${found.missing}' not found.`
        : `The conversation up to '${found.missing}' is longer than this edge forwards (${MAX_PREVIOUS_BYTES} bytes); start a new one.`,
      { param: "previous_response_id", code: found.reason === "not_found" ? "previous_response_not_found" : "context_length_exceeded" },
    );
  }
  return { req, json: raw, previous: found.items };
}

/**
 * POST /v1/responses at the edge: the same authenticate → validate → route → admit → forward →
 * settle steps as chat completions (the same limiter, pool, failover and metering functions), plus
 * the Responses API's state: previous_response_id is resolved from the key's ResponseStore and sent
 * to the node as `previous_items`, and a finished response is stored (unless `store: false`) before
 * its last byte reaches the client, so the next turn can continue it on any node.
 */
export async function createResponse(c: Context<AppEnv>): Promise<Response> {
  const started = Date.now();
  const env = c.env;
  const cfg = config(env);
  const ctx = c.executionCtx;
  const requestId = c.get("requestId");
  const keyHash = hashApiKey(apiKeyOf(c));
  const body = await readBody(c.req.raw, cfg.maxBodyBytes);
  const limiter = limiterFor(env, keyHash);

  try {
    let prepared: Awaited<ReturnType<typeof prepare>>;
    try {
      prepared = await prepare(c, body, keyHash);
    } catch (err) {
      // An invalid body is still answered 401 first when the key is bad.
      await authenticate(limiter, null);
      throw err;
    }
    const { req, json, previous } = prepared;
    const model = req.model;
    const newItems = storedItems(req.input);

    await poolView.ensureFresh(env, cfg, (p) => ctx.waitUntil(p));
    const prefixHash = responsesPrefixHash(req.instructions, [...(previous ?? []), ...newItems], cfg.affinityPrefixChars);
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

    const upstreamBody = previous ? encoder.encode(JSON.stringify({ ...json, previous_items: previous })) : body;
    const estimate = estimateTokens(upstreamBody.byteLength, { max_tokens: req.max_output_tokens, n: 1 }, cfg.defaultMaxTokens);
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

    let settle!: () => void;
    ctx.waitUntil(new Promise<void>((resolve) => (settle = resolve)));
    let released = false;
    const release = (usage: UsageReport, fields: Record<string, string | number | boolean | null>, clientGone = false) => {
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
          api: "responses",
          stream: req.stream === true,
          prompt_tokens: usage.promptTokens,
          completion_tokens: usage.completionTokens,
          ms: Date.now() - started,
          ...fields,
        });
      }
    };

    // Stored before the client sees the end, so its next turn finds it (on any isolate).
    const store = req.store !== false;
    const save = async (response: ResponseObject) => {
      const record = { response, input: newItems, previousId: req.previous_response_id ?? null };
      const saved = await responseStoreFor(env, keyHash).save(record, storeLimits(env));
      if (!saved) logError("response_not_stored", { request_id: requestId, key_id: admission.keyId });
    };

    const stream = req.stream === true;
    let fwd: Forwarded;
    try {
      fwd = await forward({
        path: PATH,
        body: upstreamBody,
        requestId,
        stream,
        nodes: route.nodes,
        secret: env.NODE_SECRET,
        cfg,
        view: poolView,
        clientSignal: c.req.raw.signal,
      });
    } catch (err) {
      release({ promptTokens: 0, completionTokens: 0, error: true }, { status: 500 });
      throw err;
    }
    if (!fwd.ok) {
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
      let response: ResponseObject | null = null;
      if (fwd.status < 400) {
        try {
          response = JSON.parse(decoder.decode(fwd.body)) as ResponseObject;
        } catch {
          response = null;
        }
      }
      const usage = response?.usage ?? null;
      release(
        {
          promptTokens: usage?.input_tokens ?? (fwd.status < 400 ? estimate.prompt : 0),
          completionTokens: usage?.output_tokens ?? (fwd.status < 400 ? estimate.total - estimate.prompt : 0),
          error: fwd.status >= 400,
        },
        { status: fwd.status, node: fwd.node.id, attempts: fwd.attempts },
      );
      if (response && store) await save(response);
      headers.set("content-type", fwd.contentType ?? "application/json");
      return new Response(fwd.body, { status: fwd.status, headers });
    }

    const node = fwd.node;
    const scanner = new ResponsesScanner();
    const metered = meteredStream({
      reader: fwd.reader,
      first: fwd.first,
      stripUsage: false,
      idleTimeoutMs: cfg.streamIdleTimeoutMs,
      protocol: { scanner, cutOffEvent: (message, code) => scanner.cutOffEvent(message, code) },
      onEnd: (o) => {
        poolView.end(node.id);
        release(
          {
            promptTokens: o.usage?.prompt_tokens ?? estimate.prompt,
            completionTokens: o.usage?.completion_tokens ?? o.chunks,
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
    const out = store ? storeOnCompletion(metered, scanner, save) : metered;
    headers.set("content-type", fwd.contentType ?? "text/event-stream");
    headers.set("cache-control", "no-cache");
    headers.set("content-encoding", "identity");
    return new Response(out, { status: fwd.status, headers });
  } catch (err) {
    if (err instanceof RefusedError) return refusalResponse(err.admission);
    throw err;
  }
}

/**
 * Passes a metered stream on, holding back the piece that carries the final response until that
 * response is stored.
 */
function storeOnCompletion(
  metered: ReadableStream<Uint8Array>,
  scanner: ResponsesScanner,
  save: (r: ResponseObject) => Promise<void>,
): ReadableStream<Uint8Array> {
  const reader = metered.getReader();
  let saved = false;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const r = await reader.read();
        if (r.done) return controller.close();
        if (scanner.final && !saved) {
          saved = true;
          await save(scanner.final).catch(() => undefined);
        }
        controller.enqueue(r.value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
