import { Hono, type Context } from "hono";
import type { AppEnv } from "../app-env";
import { adminAuth } from "../auth/admin";
import { displayPrefix, generateApiKey, hashApiKey, newKeyId } from "../auth/api-key";
import { config } from "../config";
import { ApiError, invalidValue } from "../errors";
import { parseKeyCreate, parseKeyPatch, toView, type KeyRecord } from "../keys/record";
import { registry, type RegistryResult } from "../keys/registry";
import { limiterFor, type UsageDay } from "../limits/key-limiter";
import { formatNodeCredential, NODE_ID_PATTERN, nodeUrlProblem } from "@seventy/sdk/protocol";
import { isDraining, nodePool, type NodeRegistration, type PoolNode } from "../pool/node-pool";
import { nodeKeys } from "../pool/node-keys";
import { poolView } from "../pool/view";
import { parseJson, readBody } from "../proxy/body";
import { usageSeries } from "../usage/route";

const ADMIN_BODY_LIMIT = 64 * 1024;
const DAY = /^\d{4}-\d{2}-\d{2}$/;

async function jsonBody(c: Context<AppEnv>): Promise<unknown> {
  return parseJson(await readBody(c.req.raw, ADMIN_BODY_LIMIT));
}

function unwrap(result: RegistryResult): KeyRecord {
  if (!result.ok) throw new ApiError(result.status, result.message, { code: result.status === 404 ? "key_not_found" : "key_exists" });
  return result.record;
}

function nodeView(reg: NodeRegistration, n: PoolNode | undefined, now: number) {
  return {
    id: reg.id,
    object: "node",
    url: reg.url,
    models: n?.models ?? [],
    engine: n?.engine ?? null,
    status: !n ? "registered" : n.expiresAt <= now ? "gone" : isDraining(n) ? "draining" : "healthy",
    drained_by_admin: reg.adminDrained,
    created: reg.created,
    capacity: n?.capacity ?? null,
    load: n?.load ?? null,
    last_heartbeat_ms_ago: n ? Math.max(0, now - n.lastSeen) : null,
  };
}

/** The node's credential, shown once (on registration and rotation); the edge keeps only its id. */
function credentialOf(c: Context<AppEnv>, reg: NodeRegistration): string {
  const secret = c.env.NODE_SECRET;
  if (!secret) throw new ApiError(503, "The edge has no NODE_SECRET to derive node credentials from.", { code: "edge_misconfigured" });
  return formatNodeCredential(nodeKeys(secret, reg.id, reg.credentialId));
}

function parseNodeRegistration(body: unknown): { id: string; url: string } {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw invalidValue("body", "expected a JSON object");
  const { id, url, ...rest } = body as Record<string, unknown>;
  const unknown = Object.keys(rest)[0];
  if (unknown !== undefined) throw invalidValue(unknown, "unknown field");
  if (typeof id !== "string" || !NODE_ID_PATTERN.test(id)) throw invalidValue("id", "expected 1-63 lowercase letters, digits or '-'");
  if (typeof url !== "string") throw invalidValue("url", "expected the node's URL");
  return { id, url };
}

function dayParam(c: Context<AppEnv>, name: "from" | "to"): string | undefined {
  const v = c.req.query(name);
  if (v === undefined) return undefined;
  if (!DAY.test(v)) throw new ApiError(400, `Invalid value for '${name}': expected YYYY-MM-DD.`, { param: name, code: "invalid_value" });
  return v;
}

function addDays(into: Map<string, UsageDay>, rows: UsageDay[]): void {
  for (const r of rows) {
    const t = into.get(r.day);
    if (!t) into.set(r.day, { ...r });
    else {
      t.requests += r.requests;
      t.prompt_tokens += r.prompt_tokens;
      t.completion_tokens += r.completion_tokens;
      t.errors += r.errors;
      t.rate_limited += r.rate_limited;
    }
  }
}

/** The admin API: keys, nodes and usage, behind `Authorization: Bearer ADMIN_TOKEN`. */
export const admin = new Hono<AppEnv>()
  .use("*", adminAuth())
  .post("/keys", async (c) => {
    const input = parseKeyCreate(await jsonBody(c));
    const key = input.key ?? generateApiKey();
    const record: KeyRecord = {
      id: newKeyId(),
      name: input.name,
      prefix: displayPrefix(key),
      hash: hashApiKey(key),
      created: Math.floor(Date.now() / 1000),
      disabled: input.disabled ?? false,
      models: input.models ?? null,
      limits: { ...config(c.env).defaultLimits, ...input.limits },
      budget: input.budget ?? null,
      expires_at: input.expires_at ?? null,
    };
    const created = unwrap(await registry(c.env).create(record));
    // The only time the key is ever shown.
    return c.json({ ...toView(created), key }, 201);
  })
  .get("/keys", async (c) => {
    const keys = await registry(c.env).list();
    return c.json({ object: "list", data: keys.map(toView) });
  })
  .get("/keys/:id", async (c) => {
    const r = await registry(c.env).get(c.req.param("id"));
    if (!r) throw new ApiError(404, `No key with id '${c.req.param("id")}'.`, { code: "key_not_found" });
    const s = await limiterFor(c.env, r.hash).state();
    return c.json({
      ...toView(r),
      state: {
        in_flight: s.inFlight,
        reserved_tokens: s.reservedTokens,
        remaining_requests: s.remainingRequests,
        remaining_tokens: s.remainingTokens,
      },
    });
  })
  .patch("/keys/:id", async (c) => {
    const patch = parseKeyPatch(await jsonBody(c));
    return c.json(toView(unwrap(await registry(c.env).update(c.req.param("id"), patch))));
  })
  .delete("/keys/:id", async (c) => {
    const r = unwrap(await registry(c.env).remove(c.req.param("id")));
    return c.json({ id: r.id, object: "api_key", deleted: true });
  })
  .post("/nodes", async (c) => {
    const { id, url } = parseNodeRegistration(await jsonBody(c));
    const problem = nodeUrlProblem(url, config(c.env).allowHttpLoopbackNodes);
    if (problem) throw invalidValue("url", problem);
    const reg = await nodePool(c.env).register(id, url);
    if (!reg) throw new ApiError(409, `A node with id '${id}' is already registered (rotate or delete it).`, { code: "node_exists", param: "id" });
    return c.json({ ...nodeView(reg, undefined, Date.now()), credential: credentialOf(c, reg) }, 201);
  })
  .get("/nodes", async (c) => {
    const pool = nodePool(c.env);
    const [regs, nodes] = await Promise.all([pool.listRegistrations(), pool.snapshot()]);
    const byId = new Map(nodes.map((n) => [n.id, n]));
    const now = Date.now();
    return c.json({ object: "list", data: regs.map((r) => nodeView(r, byId.get(r.id), now)) });
  })
  .post("/nodes/:id/rotate", async (c) => {
    const reg = await nodePool(c.env).rotate(c.req.param("id"));
    if (!reg) throw new ApiError(404, `No node with id '${c.req.param("id")}'.`, { code: "node_not_found" });
    poolView.remove(reg.id);
    return c.json({ ...nodeView(reg, undefined, Date.now()), credential: credentialOf(c, reg) });
  })
  .delete("/nodes/:id", async (c) => {
    const id = c.req.param("id");
    if (!(await nodePool(c.env).revoke(id))) throw new ApiError(404, `No node with id '${id}'.`, { code: "node_not_found" });
    poolView.remove(id);
    return c.json({ id, object: "node", deleted: true });
  })
  .post("/nodes/:id/drain", async (c) => {
    const r = await nodePool(c.env).setDrained(c.req.param("id"), true);
    if (!r) throw new ApiError(404, `No node with id '${c.req.param("id")}'.`, { code: "node_not_found" });
    if (r.node) poolView.apply(r.node);
    return c.json(nodeView(r.registration, r.node ?? undefined, Date.now()));
  })
  .post("/nodes/:id/undrain", async (c) => {
    const r = await nodePool(c.env).setDrained(c.req.param("id"), false);
    if (!r) throw new ApiError(404, `No node with id '${c.req.param("id")}'.`, { code: "node_not_found" });
    if (r.node) poolView.apply(r.node);
    return c.json(nodeView(r.registration, r.node ?? undefined, Date.now()));
  })
  .get("/usage/series", usageSeries)
  .get("/usage", async (c) => {
    const from = dayParam(c, "from");
    const to = dayParam(c, "to");
    const id = c.req.query("key");
    const reg = registry(c.env);
    let records: KeyRecord[];
    if (id !== undefined) {
      const r = await reg.get(id, true);
      if (!r) throw new ApiError(404, `No key with id '${id}'.`, { code: "key_not_found", param: "key" });
      records = [r];
    } else {
      records = await reg.list();
    }
    const days = new Map<string, UsageDay>();
    const rows = await Promise.all(records.map((r) => limiterFor(c.env, r.hash).usage(from, to)));
    for (const r of rows) addDays(days, r);
    const data = [...days.values()].sort((a, b) => (a.day < b.day ? -1 : 1));
    return c.json({ object: "list", key: id ?? null, data });
  });
