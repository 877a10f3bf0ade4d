import type { MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import type { AppEnv } from "../app-env";
import { config } from "../config";

/** Headers a browser app may read from responses. */
const EXPOSED = [
  "x-request-id",
  "retry-after",
  "retry-after-ms",
  "x-ratelimit-limit-requests",
  "x-ratelimit-remaining-requests",
  "x-ratelimit-reset-requests",
  "x-ratelimit-limit-tokens",
  "x-ratelimit-remaining-tokens",
  "x-ratelimit-reset-tokens",
];

/**
 * CORS for browser apps, from the CORS_ORIGINS var: `*`, a comma-separated list of origins, or
 * empty for none (the default: server-side callers need no CORS, and browsers should not hold keys
 * unless the deployment chooses so).
 */
export const corsFromConfig = (): MiddlewareHandler<AppEnv> => {
  let handler: MiddlewareHandler | null | undefined;
  return async function corsFromConfig(c, next) {
    if (handler === undefined) {
      const origins = config(c.env).corsOrigins;
      handler = origins
        ? cors({
            origin: origins,
            allowMethods: ["GET", "POST", "OPTIONS"],
            // Unset allowHeaders reflects what the preflight asks for (SDKs send many x-stainless-* headers).
            exposeHeaders: EXPOSED,
            maxAge: 600,
          })
        : null;
    }
    if (handler) return handler(c, next);
    await next();
  };
};
