import { WorkerEntrypoint } from "cloudflare:workers";
import { Hono, type Context } from "hono";
import { HTTPException } from "hono/http-exception";
import type { AppEnv } from "./app-env";
import type { Env } from "./env";
import { ApiError, errorResponse } from "./errors";
import { logError } from "./log";
import { corsFromConfig } from "./middleware/cors";
import { requestId } from "./middleware/request-id";
import { admin } from "./routes/admin";
import { internal } from "./routes/internal";
import { responses } from "./responses/routes";
import { v1 } from "./routes/v1";

export { KeyRegistry } from "./keys/registry";
export { KeyLimiter } from "./limits/key-limiter";
export { NodePool } from "./pool/node-pool";
export { ResponseStore } from "./responses/store";

/**
 * The edge: apps call /v1 with API keys; admins manage keys and nodes under /admin; gpu-nodes
 * report to /internal with signed heartbeats.
 */
const app = new Hono<AppEnv>();

app.use("*", requestId());
app.use("/v1/*", corsFromConfig());
// `time` lets a gpu-node's `doctor` measure its clock against the edge's (signatures allow 60 s).
app.get("/health", (c) => c.json({ ok: true, time: Date.now() }));
app.route("/v1/responses", responses);
app.route("/v1", v1);
app.route("/admin", admin);
app.route("/internal", internal);

// Cloudflare's asset layer answers the dashboard's files before the worker runs. A local stack under
// bare workerd binds ASSETS (edge/scripts/assets-server.mjs) instead, and these paths go to it.
// (Re-wrapped: a fetched response's headers are immutable, and the middleware adds x-request-id.)
const assets = async (c: Context<AppEnv>) => {
  if (!c.env.ASSETS) return c.notFound();
  const res = await c.env.ASSETS.fetch(c.req.raw);
  return new Response(res.body, res);
};
app.get("/dashboard", assets);
app.get("/playground", assets);
app.get("/ui/*", assets);

app.notFound((c) =>
  errorResponse(404, `Invalid URL (${c.req.method} ${new URL(c.req.url).pathname}).`, { code: "unknown_url" }),
);

app.onError((err, c) => {
  if (err instanceof ApiError) return err.toResponse();
  if (err instanceof HTTPException) return errorResponse(err.status, err.message || "Request failed.");
  logError("unhandled", { request_id: c.get("requestId"), error: err instanceof Error ? err.name : "unknown" });
  return errorResponse(500, "The edge hit an internal error.", { code: "internal_error" });
});

/**
 * The RPC entrypoint for other Workers bound to the edge by a service binding
 * (`services = [{ binding = "SEVENTY", service = "seventy-edge", entrypoint = "SeventyEntrypoint" }]`):
 * `Seventy.fromBinding(env.SEVENTY, { apiKey })` sends the very same requests, with no public HTTP hop,
 * through the same app, so auth and limits apply exactly as over HTTP.
 */
export class SeventyEntrypoint extends WorkerEntrypoint<Env> {
  override fetch(request: Request): Promise<Response> {
    return Promise.resolve(app.fetch(request, this.env, this.ctx));
  }
}

export default app satisfies ExportedHandler<Env>;
