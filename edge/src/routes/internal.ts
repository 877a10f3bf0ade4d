import { checkSignatureHeaders, NODE_ID_HEADER, NODE_ID_PATTERN } from "@seventy/sdk/protocol";
import { Hono } from "hono";
import type { AppEnv } from "../app-env";
import { config } from "../config";
import { ApiError, apiErrorFromBody } from "../errors";
import { logError } from "../log";
import { nodePool } from "../pool/node-pool";
import { poolView } from "../pool/view";
import { readBody } from "../proxy/body";

const HEARTBEAT_BODY_LIMIT = 64 * 1024;

/**
 * Endpoints for gpu-nodes. A heartbeat is signed with the node's own node → edge key and names its
 * node id (x-seventy-node); the NodePool object verifies it against that node's registration.
 */
export const internal = new Hono<AppEnv>().post("/nodes/heartbeat", async (c) => {
  const nodeId = c.req.header(NODE_ID_HEADER) ?? "";
  // Headers first: an unsigned, stale or unnamed heartbeat is refused before its body is read.
  const pre = NODE_ID_PATTERN.test(nodeId) ? checkSignatureHeaders({ headers: c.req.raw.headers, nodeId }) : ({ ok: false, reason: "no node id" } as const);
  if (!pre.ok) {
    logError("heartbeat_rejected", { request_id: c.get("requestId"), reason: pre.reason });
    throw new ApiError(401, "Invalid node signature.", { code: "invalid_signature" });
  }
  const body = await readBody(c.req.raw, HEARTBEAT_BODY_LIMIT);
  const url = new URL(c.req.url);
  const result = await nodePool(c.env).heartbeat({
    nodeId,
    path: url.pathname + url.search,
    headers: Object.fromEntries(c.req.raw.headers),
    body,
  });
  if (!result.ok) {
    logError("heartbeat_rejected", { request_id: c.get("requestId"), node: nodeId, reason: result.reason });
    if (result.body) throw apiErrorFromBody(result.status, result.body);
    const message = result.status === 401 ? "Invalid node signature." : `Heartbeat refused: ${result.reason}.`;
    throw new ApiError(result.status, message, { code: result.code });
  }
  poolView.apply(result.node);
  return c.json({
    ok: true,
    draining: result.node.adminDrained || result.node.reportedDraining,
    ttl_ms: config(c.env).nodeTtlMs,
  });
});
