import type { ResponseDeleted, ResponseItem, ResponseItemList } from "@seventy/sdk/protocol";
import { Hono, type Context } from "hono";
import type { AppEnv } from "../app-env";
import { hashApiKey } from "../auth/api-key";
import { ApiError, invalidValue } from "../errors";
import { rateLimitHeaders } from "../limits/headers";
import { limiterFor } from "../limits/key-limiter";
import { apiKeyOf, authenticate, complete, RefusedError, refusalResponse } from "../routes/v1";
import { responsesApi } from "./create";
import { responseStoreFor, storeLimits, type StoredResponse } from "./store";

function notFound(id: string): ApiError {
  return new ApiError(404, `Response with id '${id}' not found.`, { param: "response_id", code: "not_found" });
}

/**
 * Runs `fn` with the caller's own store once the key is known good: every key reads and deletes in
 * its own ResponseStore only, so another key's response id is simply not found.
 */
async function withStore(
  c: Context<AppEnv>,
  fn: (store: ReturnType<typeof responseStoreFor>, headers: Record<string, string>) => Promise<Response>,
): Promise<Response> {
  const keyHash = hashApiKey(apiKeyOf(c));
  try {
    const auth = await authenticate(limiterFor(c.env, keyHash), null);
    return await fn(responseStoreFor(c.env, keyHash), rateLimitHeaders(auth.rate));
  } catch (err) {
    if (err instanceof RefusedError) return refusalResponse(err.admission);
    throw err;
  }
}

async function find(c: Context<AppEnv>, store: ReturnType<typeof responseStoreFor>): Promise<StoredResponse> {
  const id = c.req.param("id")!;
  const found = await store.get(id, storeLimits(c.env));
  if (!found) throw notFound(id);
  return found as StoredResponse;
}

/** `GET /v1/responses/{id}/input_items`: `order` asc|desc (default desc), `limit` 1–100 (default 20), `after`. */
function listItems(c: Context<AppEnv>, items: ResponseItem[]): ResponseItemList {
  const order = c.req.query("order") ?? "desc";
  if (order !== "asc" && order !== "desc") throw invalidValue("order", "must be 'asc' or 'desc'");
  const limitRaw = c.req.query("limit") ?? "20";
  const limit = Number(limitRaw);
  if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw invalidValue("limit", "must be an integer from 1 to 100");
  const ordered = order === "asc" ? items : [...items].reverse();
  let start = 0;
  const after = c.req.query("after");
  if (after !== undefined) {
    const at = ordered.findIndex((i) => i.id === after);
    if (at < 0) throw invalidValue("after", `no input item with id '${after}'`);
    start = at + 1;
  }
  const data = ordered.slice(start, start + limit);
  return {
    object: "list",
    data,
    first_id: data[0]?.id ?? null,
    last_id: data[data.length - 1]?.id ?? null,
    has_more: start + limit < ordered.length,
  };
}

export const responses = new Hono<AppEnv>()
  .post("/", (c) => complete(c, responsesApi))
  .get("/:id", (c) => withStore(c, async (store, headers) => c.json((await find(c, store)).response, 200, headers)))
  .delete("/:id", (c) =>
    withStore(c, async (store, headers) => {
      const id = c.req.param("id");
      if (!(await store.remove(id))) throw notFound(id);
      return c.json({ id, object: "response.deleted", deleted: true } satisfies ResponseDeleted, 200, headers);
    }),
  )
  .post("/:id/cancel", (c) =>
    withStore(c, async (store) => {
      // Stored responses are finished ones: only a background response (not offered here) can be cancelled.
      const { response } = await find(c, store);
      throw new ApiError(400, `Only responses created with background=true can be cancelled; '${response.id}' has status '${response.status}'.`, {
        param: "response_id",
        code: "invalid_request",
      });
    }),
  )
  .get("/:id/input_items", (c) => withStore(c, async (store, headers) => c.json(listItems(c, (await find(c, store)).input), 200, headers)));
