import type { Context } from "hono";
import type { AppEnv } from "../app-env";
import { ApiError } from "../errors";
import { registry } from "../keys/registry";
import { limiterFor } from "../limits/key-limiter";
import { WINDOWS, type SeriesWindow } from "./series";

/**
 * GET /admin/usage/series?window=hour|month: every key's usage buckets, aligned on the same starts
 * (each key's limiter keeps its own rings; this gathers them). Keys without any use in the window
 * are left out, so the answer grows with active keys, not with all keys ever made; keys revoked
 * within the window are in, marked `revoked`.
 */
export async function usageSeries(c: Context<AppEnv>): Promise<Response> {
  const window = c.req.query("window") ?? "hour";
  if (window !== "hour" && window !== "month") {
    throw new ApiError(400, "Invalid value for 'window': expected 'hour' or 'month'.", { param: "window", code: "invalid_value" });
  }
  const w: SeriesWindow = window;
  const { step, buckets } = WINDOWS[w];
  // A key revoked within the window still used what it used.
  const records = await registry(c.env).list(Math.floor((Date.now() - step * buckets) / 1000));
  const all = await Promise.all(
    records.map(async (r) => ({
      id: r.id,
      name: r.name,
      prefix: r.prefix,
      revoked: r.deleted !== undefined,
      buckets: await limiterFor(c.env, r.hash).usageSeries(w),
    })),
  );
  const keys = all.filter((k) => k.buckets.some((b) => b.requests > 0));
  return c.json({ object: "usage_series", window: w, step, keys });
}
