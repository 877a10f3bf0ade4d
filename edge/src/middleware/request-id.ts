import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app-env";
import { randomHex128 } from "../crypto/random";

const VALID = /^[A-Za-z0-9._:-]{1,128}$/;

function newRequestId(): string {
  return `req_${randomHex128()}`;
}

/**
 * Takes the caller's `x-request-id` (when it is a sane token) or makes one, exposes it as
 * `c.get("requestId")`, forwards it to nodes and echoes it on every response.
 */
export const requestId = (): MiddlewareHandler<AppEnv> =>
  async function requestId(c, next) {
    const given = c.req.header("x-request-id");
    const id = given && VALID.test(given) ? given : newRequestId();
    c.set("requestId", id);
    await next();
    c.res.headers.set("x-request-id", id);
  };
