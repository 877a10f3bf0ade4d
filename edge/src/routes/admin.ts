import { Hono, type Context } from "hono";
import type { AppEnv } from "../app-env";
import { adminAuth } from "../auth/admin";
import { displayPrefix, generateApiKey, hashApiKey, newKeyId } from "../auth/api-key";
import { config } from "../config";
import { ApiError } from "../errors";
import { parseKeyCreate, parseKeyPatch, toView, type KeyRecord } from "../keys/record";
import { registry, type RegistryResult } from "../keys/registry";
import { limiterFor, type UsageDay } from "../limits/key-limiter";
import { isDraining, nodePool, type PoolNode } from "../pool/node-pool";
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

function nodeView(n: PoolNode, now: number) {
  return {
    id: n.id,
    object: "node",
    url: n.url,
    models: n.models,
    engine: n.engine,
    status: n.expiresAt <= now ? "gone" : isDraining(n) ? "draining" : "healthy",
    drained_by_admin: n.adminDrained,
    capacity: n.capacity,
    load: n.load,
    last_heartbeat_ms_ago: Math.max(0, now - n.lastSeen),
  };
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
  .get("/nodes", async (c) => {
    const nodes = await nodePool(c.env).snapshot();
    const now = Date.now();
    return c.json({ object: "list", data: nodes.map((n) => nodeView(n, now)) });
  })
  .post("/nodes/:id/drain", async (c) => {
    const node = await nodePool(c.env).setDrained(c.req.param("id"), true);
    if (!node) throw new ApiError(404, `No node with id '${c.req.param("id")}'.`, { code: "node_not_found" });
    poolView.apply(node);
    return c.json(nodeView(node, Date.now()));
  })
  .post("/nodes/:id/undrain", async (c) => {
    const node = await nodePool(c.env).setDrained(c.req.param("id"), false);
    if (!node) throw new ApiError(404, `No node with id '${c.req.param("id")}'.`, { code: "node_not_found" });
    poolView.apply(node);
    return c.json(nodeView(node, Date.now()));
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
