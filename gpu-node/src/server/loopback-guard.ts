import type { MiddlewareHandler } from "hono";
import { HttpError } from "./http-error.js";

const LOOPBACK_HOST = /^(localhost|127\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[::1\])(:\d{1,5})?$/i;

/** Whether a URL's or Host header's host names this machine's loopback interface. */
export function isLoopbackHost(host: string): boolean {
  return LOOPBACK_HOST.test(host);
}

/**
 * The unsigned (loopback) mode's defence against web pages in a browser on the same machine:
 * - a POST must be `application/json`, which a page can only send after a CORS preflight that this
 *   node never grants (`text/plain` "simple" requests are refused, so no CSRF);
 * - the Host header must name loopback, so a DNS-rebinding page (evil.example resolving to
 *   127.0.0.1) is refused;
 * - an Origin header, when present, must be a loopback origin.
 *
 * @example
 * if (!credential) app.use("*", loopbackGuard());
 */
export const loopbackGuard = (): MiddlewareHandler =>
  async function loopbackGuard(c, next) {
    const host = c.req.header("host");
    if (host !== undefined && !isLoopbackHost(host)) {
      throw new HttpError(403, "This node serves unsigned requests to loopback hosts only.", { code: "forbidden_host", type: "permission_error" });
    }
    const origin = c.req.header("origin");
    if (origin !== undefined) {
      let ok = false;
      try {
        const u = new URL(origin);
        ok = (u.protocol === "http:" || u.protocol === "https:") && isLoopbackHost(u.host);
      } catch {
        ok = false;
      }
      if (!ok) throw new HttpError(403, "Cross-origin requests are not served.", { code: "forbidden_origin", type: "permission_error" });
    }
    if (c.req.method === "POST") {
      const type = (c.req.header("content-type") ?? "").split(";")[0]!.trim().toLowerCase();
      if (type !== "application/json") {
        throw new HttpError(415, "Request bodies must be sent with 'Content-Type: application/json'.", { code: "unsupported_media_type" });
      }
    }
    await next();
  };
