import type { MiddlewareHandler } from "hono";
import type { AppEnv } from "../app-env";
import { ApiError } from "../errors";
import { bearerToken } from "./api-key";
import { timingSafeEqualString } from "./compare";

/**
 * Guards the admin API with `Authorization: Bearer ADMIN_TOKEN`. An unset or empty
 * ADMIN_TOKEN locks the admin API entirely.
 *
 * @example
 * app.use("/admin/*", adminAuth());
 */
export const adminAuth = (): MiddlewareHandler<AppEnv> =>
  async function adminAuth(c, next) {
    const expected = c.env.ADMIN_TOKEN;
    const token = bearerToken(c.req.header("authorization"));
    if (!expected || !token || !(await timingSafeEqualString(token, expected))) {
      throw new ApiError(401, "Invalid or missing admin token.", { code: "invalid_admin_token" });
    }
    await next();
  };
