import { nodeHeartbeatSchema, verifyRequest, zodErrorBody } from "@seventy/sdk/protocol";
import { Hono } from "hono";
import type { AppEnv } from "../app-env";
import { config } from "../config";
import { ApiError, apiErrorFromBody } from "../errors";
import { logError } from "../log";
import { nodePool } from "../pool/node-pool";
import { poolView } from "../pool/view";
import { parseJson, readBody } from "../proxy/body";

const HEARTBEAT_BODY_LIMIT = 64 * 1024;

/** Endpoints for gpu-nodes, authenticated by HMAC signatures with NODE_SECRET. */
export const internal = new Hono<AppEnv>().post("/nodes/heartbeat", async (c) => {
  const body = await readBody(c.req.raw, HEARTBEAT_BODY_LIMIT);
  const secret = c.env.NODE_SECRET;
  const url = new URL(c.req.url);
  const verdict = secret
    ? await verifyRequest({ method: "POST", path: url.pathname + url.search, body, secret, headers: c.req.raw.headers })
    : ({ ok: false, reason: "no NODE_SECRET configured" } as const);
  if (!verdict.ok) {
    logError("heartbeat_rejected", { request_id: c.get("requestId"), reason: verdict.reason });
    throw new ApiError(401, "Invalid node signature.", { code: "invalid_signature" });
  }
  const parsed = nodeHeartbeatSchema.safeParse(parseJson(body));
  if (!parsed.success) throw apiErrorFromBody(400, zodErrorBody(parsed.error));
  const result = await nodePool(c.env).heartbeat(parsed.data, verdict.nonce);
  if (!result.ok) {
    logError("heartbeat_rejected", { request_id: c.get("requestId"), reason: result.reason });
    throw new ApiError(401, "Invalid node signature.", { code: "replayed_signature" });
  }
  poolView.apply(result.node);
  return c.json({
    ok: true,
    draining: result.node.adminDrained || result.node.reportedDraining,
    ttl_ms: config(c.env).nodeTtlMs,
  });
});
