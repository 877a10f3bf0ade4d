import type { HttpBindings } from "@hono/node-server";
import { Hono, type Context } from "hono";
import { tokenizeRequestSchema } from "@seventy/sdk/protocol";
import { memoryPlanJson } from "../engine/memory-plan.js";
import { chatCompletions } from "./chat-route.js";
import { completions } from "./completions-route.js";
import type { NodeContext, RequestConn } from "./context.js";
import { HttpError } from "./http-error.js";
import { checkModel } from "./request-prep.js";
import { loopbackGuard } from "./loopback-guard.js";
import { encodeChatPrompt, encodeTextPrompt } from "./prompt.js";
import { responses } from "./responses/route.js";
import { LOCAL_TENANT, SignatureVerifier, signableFrom, type Tenant } from "./signature.js";

const REQUEST_ID_RE = /^[\w.:\-]{1,128}$/;

/** Reads the body once, bounded by maxBodyBytes (413 beyond), so the signature covers exactly what is parsed. */
export async function readBody(c: Context<NodeEnv>, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > maxBytes) throw new HttpError(413, `Request body too large (limit ${maxBytes} bytes).`, { code: "body_too_large" });
  const reader = c.req.raw.body?.getReader();
  if (!reader) return new Uint8Array(0);
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel().catch(() => {});
      throw new HttpError(413, `Request body too large (limit ${maxBytes} bytes).`, { code: "body_too_large" });
    }
    parts.push(value);
  }
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(size);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

function parseJson(bytes: Uint8Array): unknown {
  if (bytes.byteLength === 0) throw new HttpError(400, "The request body is empty; expected a JSON object.", { code: "invalid_json" });
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch {
    throw new HttpError(400, "The request body is not valid JSON.", { code: "invalid_json" });
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new HttpError(400, "The request body must be a JSON object.", { code: "invalid_json" });
  }
  return value;
}

/**
 * The gpu-node's HTTP API: OpenAI-compatible chat completions, completions and responses, vLLM's /tokenize,
 * /health and Prometheus /metrics.
 */
/** Node's bindings are present when served by @hono/node-server; absent under `app.fetch`. */
export type NodeEnv = {
  Bindings: Partial<HttpBindings>;
  Variables: { requestId: string; tenant: Tenant; budget: number | null; cancel: AbortSignal };
};

export function createApp(ctx: NodeContext): Hono<NodeEnv> {
  const app = new Hono<NodeEnv>();
  const verifier = ctx.credential ? new SignatureVerifier(ctx.credential, signableFrom(ctx.startedAt)) : null;
  /**
   * Requests the edge may stop by name: the nonce of the signature they came with → their abort.
   * The edge stops a request this way (POST /v1/cancel) instead of dropping the connection, and
   * then reads the answer to its end: the node ends it at once with the usage it really generated.
   */
  const cancellable = new Map<string, AbortController>();

  app.use("*", async (c, next) => {
    const given = c.req.header("x-request-id");
    const requestId = given && REQUEST_ID_RE.test(given) ? given : crypto.randomUUID();
    c.set("requestId", requestId);
    await next();
    // A stream written straight to Node already carries the header (and its marker response is shared).
    if (!c.res.headers.has("x-hono-already-sent")) c.res.headers.set("x-request-id", requestId);
  });

  // Without a credential the node serves anyone who can reach it: only loopback, and never a browser page.
  if (!verifier) app.use("*", loopbackGuard());

  /** Reads, verifies and parses a JSON body for the API routes. */
  async function jsonBody(c: Context<NodeEnv>): Promise<unknown> {
    if (ctx.draining) {
      throw new HttpError(503, "This node is draining and takes no new requests.", {
        code: "node_draining",
        headers: { "retry-after": "1" },
      });
    }
    // Unsigned, stale or misaddressed requests are refused before a byte of their body is read.
    verifier?.precheck(c.req.raw);
    const bytes = await readBody(c, ctx.maxBodyBytes);
    const signed = verifier ? await verifier.verify(c.req.raw, bytes) : null;
    c.set("tenant", signed?.tenant ?? LOCAL_TENANT);
    c.set("budget", signed?.budget ?? null);
    const body = parseJson(bytes);
    const abort = new AbortController();
    if (signed && !cancellable.has(signed.nonce)) {
      cancellable.set(signed.nonce, abort);
      const forget = () => cancellable.delete(signed.nonce);
      // Forgotten when the answer is over (streams outlive the handler) or the client left.
      if (c.env?.outgoing) c.env.outgoing.once("close", forget);
      else abort.signal.addEventListener("abort", forget, { once: true });
      c.req.raw.signal.addEventListener("abort", forget, { once: true });
    }
    c.set("cancel", abort.signal);
    return body;
  }

  const conn = (c: Context<NodeEnv>): RequestConn => ({
    signal: AbortSignal.any([c.req.raw.signal, c.get("cancel")]),
    outgoing: c.env?.outgoing,
    requestId: c.get("requestId"),
    tenant: c.get("tenant") ?? LOCAL_TENANT,
    budget: c.get("budget"),
  });
  app.post("/v1/chat/completions", async (c) => chatCompletions(ctx, await jsonBody(c), conn(c)));
  app.post("/v1/completions", async (c) => completions(ctx, await jsonBody(c), conn(c)));
  app.post("/v1/responses", async (c) => responses(ctx, await jsonBody(c), conn(c)));

  // The edge stops one of its requests (named by its signature's nonce); the request's own answer
  // then ends with the usage generated so far. Signed like every edge request.
  app.post("/v1/cancel", async (c) => {
    verifier?.precheck(c.req.raw);
    const bytes = await readBody(c, 4096);
    if (verifier) await verifier.verify(c.req.raw, bytes);
    const parsed = parseJson(bytes) as { nonce?: unknown };
    if (typeof parsed.nonce !== "string") throw new HttpError(400, "Expected {\"nonce\": string}.", { param: "nonce", code: "invalid_value" });
    const abort = cancellable.get(parsed.nonce);
    cancellable.delete(parsed.nonce);
    abort?.abort();
    return c.json({ cancelled: abort !== undefined });
  });

  app.get("/v1/models", async (c) => {
    if (verifier) {
      verifier.precheck(c.req.raw);
      await verifier.verify(c.req.raw, new Uint8Array(0));
    }
    return c.json({
      object: "list",
      data: [
        {
          id: ctx.modelName,
          object: "model",
          created: Math.floor(ctx.startedAt / 1000),
          owned_by: "seventy",
          max_model_len: ctx.maxModelLen,
        },
      ],
    });
  });

  app.post("/tokenize", async (c) => {
    const parsed = tokenizeRequestSchema.safeParse(await jsonBody(c));
    if (!parsed.success) throw HttpError.fromZod(parsed.error);
    const req = parsed.data;
    if (req.model) checkModel(ctx, req.model);
    const tokens =
      "messages" in req
        ? await encodeChatPrompt(
            ctx,
            req.messages.map((m) => ({ ...m, content: typeof m.content === "string" || m.content == null ? m.content : m.content.map((p) => p.text).join("") })),
            { addGenerationPrompt: req.add_generation_prompt ?? true, tools: req.tools ?? undefined },
          )
        : await encodeTextPrompt(ctx, req.prompt, req.add_special_tokens ?? true, "prompt");
    return c.json({ tokens, count: tokens.length, max_model_len: ctx.maxModelLen });
  });

  app.get("/health", (c) => {
    const s = ctx.scheduler.stats();
    return c.json({
      status: ctx.draining ? "draining" : "ok",
      model: ctx.modelName,
      engine: ctx.engineKind,
      running: s.numRunning,
      waiting: s.numWaiting,
      kv_blocks_used: s.kvBlocksUsed,
      kv_blocks_total: s.kvBlocksTotal,
      kv_usage: s.kvUsage,
      prefix_cache_hit_rate: s.prefixCacheHitRate,
      preemptions: s.numPreemptions,
      max_model_len: ctx.maxModelLen,
      memory_plan: ctx.memoryPlan ? memoryPlanJson(ctx.memoryPlan) : null,
    });
  });

  app.get("/metrics", async (c) => {
    const s = ctx.scheduler.stats();
    ctx.metrics.running.set(s.numRunning);
    ctx.metrics.waiting.set(s.numWaiting);
    ctx.metrics.kvUsage.set(s.kvUsage);
    ctx.metrics.prefixHitRate.set(s.prefixCacheHitRate);
    ctx.metrics.preemptions.set(s.numPreemptions);
    ctx.metrics.overlappedSteps.set(s.numOverlappedSteps);
    return c.body(await ctx.metrics.registry.metrics(), 200, { "content-type": ctx.metrics.registry.contentType });
  });

  app.notFound((c) => new HttpError(404, `No route for ${c.req.method} ${new URL(c.req.url).pathname}.`, { code: "not_found" }).toResponse());

  app.onError((err) => {
    if (err instanceof HttpError) return err.toResponse();
    // A bug, not a user mistake: log the error (never the request body) and answer 500.
    console.error(`[gpu-node] internal error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    return new HttpError(500, "Internal server error.", { code: "internal_error" }).toResponse();
  });

  return app;
}
