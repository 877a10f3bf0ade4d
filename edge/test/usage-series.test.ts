import { reset } from "cloudflare:test";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { resetReleases } from "../src/limits/releases";
import { poolView } from "../src/pool/view";
import { UsageSeries, type SeriesStorage } from "../src/usage/series";
import { admin, call, CHAT, chat, createKey, expectOpenAIError, heartbeat, sendHeartbeat } from "./helpers";

const MINUTE = 60_000;
const DAY = 86_400_000;

function memoryStorage(): SeriesStorage & { map: Map<string, unknown> } {
  const map = new Map<string, unknown>();
  return {
    map,
    get: <T>(k: string) => map.get(k) as T | undefined,
    put: <T>(k: string, v: T) => void map.set(k, structuredClone(v)),
  };
}

const sample = (promptTokens: number, completionTokens: number, cachedTokens = 0, error = false) => ({ promptTokens, completionTokens, cachedTokens, error });

describe("UsageSeries", () => {
  // 2026-11-27 10:00:00 UTC, a minute and day boundary.
  const t0 = Date.UTC(2026, 10, 27, 10, 0, 0);

  it("adds requests and tokens to minute and day buckets and reads every bucket of the window", () => {
    const s = new UsageSeries(memoryStorage());
    s.record(t0 + 5_000, sample(10, 20, 4));
    s.record(t0 + 59_000, sample(1, 2, 0, true));
    s.record(t0 + MINUTE + 1, sample(7, 8, 7));
    const hour = s.read("hour", t0 + MINUTE + 30_000);
    expect(hour).toHaveLength(60);
    expect(hour[59]).toEqual({ start: t0 + MINUTE, requests: 1, prompt_tokens: 7, completion_tokens: 8, cached_tokens: 7, errors: 0 });
    expect(hour[58]).toEqual({ start: t0, requests: 2, prompt_tokens: 11, completion_tokens: 22, cached_tokens: 4, errors: 1 });
    expect(hour[0]!.start).toBe(t0 + MINUTE - 59 * MINUTE);
    expect(hour.slice(0, 58).every((b) => b.requests === 0)).toBe(true);
    const month = s.read("month", t0 + MINUTE);
    expect(month).toHaveLength(30);
    expect(month[29]).toMatchObject({ start: t0 - 10 * 3_600_000, requests: 3, prompt_tokens: 18, completion_tokens: 30, cached_tokens: 11, errors: 1 });
    s.flush();
  });

  it("drops buckets older than the window, so storage stays bounded", () => {
    const storage = memoryStorage();
    const s = new UsageSeries(storage);
    // One request every 20 s for three hours, then one a day for 90 days.
    for (let t = t0; t < t0 + 3 * 3_600_000; t += 20_000) s.record(t, sample(1, 1));
    for (let d = 1; d <= 90; d++) s.record(t0 + d * DAY, sample(1, 1));
    s.flush();
    expect((storage.map.get("series:minute") as unknown[]).length).toBeLessThanOrEqual(60);
    expect((storage.map.get("series:day") as unknown[]).length).toBeLessThanOrEqual(30);
    const now = t0 + 90 * DAY;
    expect(s.read("hour", now).reduce((n, b) => n + b.requests, 0)).toBe(1);
    expect(s.read("month", now).reduce((n, b) => n + b.requests, 0)).toBe(30);
    // An hour later the minute ring is empty again.
    expect(s.read("hour", now + 3_600_000).every((b) => b.requests === 0)).toBe(true);
  });

  it("comes back from storage as it was flushed", () => {
    const storage = memoryStorage();
    const s = new UsageSeries(storage);
    s.record(t0 + 1000, sample(3, 4, 2));
    s.flush();
    const again = new UsageSeries(storage);
    expect(again.read("hour", t0 + 2000)).toEqual(s.read("hour", t0 + 2000));
    expect(again.read("month", t0 + 2000)).toEqual(s.read("month", t0 + 2000));
  });
});

describe("GET /admin/usage/series and key expiry", () => {
  beforeEach(() => {
    vi.spyOn(globalThis, "fetch").mockImplementation(async () =>
      Response.json({
        id: "cmpl-1",
        object: "chat.completion",
        created: 1,
        model: "tiny",
        choices: [{ index: 0, message: { role: "assistant", content: "hi" }, logprobs: null, finish_reason: "stop" }],
        usage: { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13, prompt_tokens_details: { cached_tokens: 5 } },
      }),
    );
  });

  afterEach(async () => {
    await new Promise((r) => setTimeout(r, 50));
    vi.restoreAllMocks();
    poolView.reset();
    resetReleases();
    await reset();
  });

  it("gives each used key's buckets, cached tokens included, and leaves idle keys out", async () => {
    expect((await sendHeartbeat(heartbeat("a"))).status).toBe(200);
    const used = await createKey({ name: "used" });
    await createKey({ name: "idle" });
    expect((await chat(used.key, CHAT)).status).toBe(200);
    expect((await chat(used.key, CHAT)).status).toBe(200);
    for (const window of ["hour", "month"] as const) {
      await vi.waitFor(async () => {
        const res = await admin(`/admin/usage/series?window=${window}`);
        expect(res.status).toBe(200);
        const body = (await res.json()) as { window: string; step: number; keys: { id: string; name: string; buckets: Record<string, number>[] }[] };
        expect(body.window).toBe(window);
        expect(body.step).toBe(window === "hour" ? MINUTE : DAY);
        expect(body.keys.map((k) => k.name)).toEqual(["used"]);
        const buckets = body.keys[0]!.buckets;
        expect(buckets).toHaveLength(window === "hour" ? 60 : 30);
        const sum = (m: string) => buckets.reduce((n, b) => n + b[m]!, 0);
        expect([sum("requests"), sum("prompt_tokens"), sum("completion_tokens"), sum("cached_tokens")]).toEqual([2, 18, 8, 10]);
      });
    }
    // A revoked key's use stays in the charts, marked.
    expect((await admin(`/admin/keys/${used.id}`, { method: "DELETE" })).status).toBe(200);
    const after = (await (await admin("/admin/usage/series?window=hour")).json()) as { keys: { name: string; revoked: boolean }[] };
    expect(after.keys).toMatchObject([{ name: "used", revoked: true }]);
  });

  it("validates the window and needs the admin token", async () => {
    const bad = await expectOpenAIError(await admin("/admin/usage/series?window=year"), 400, "invalid_value");
    expect(bad.param).toBe("window");
    await expectOpenAIError(await call("/admin/usage/series"), 401, "invalid_admin_token");
  });

  it("refuses a key after its expiry, and an expiry in the past up front", async () => {
    const past = await admin("/admin/keys", { method: "POST", json: { name: "old", expires_at: Math.floor(Date.now() / 1000) - 1 } });
    expect((await expectOpenAIError(past, 400, "invalid_value")).param).toBe("expires_at");
    const expiresAt = Math.floor(Date.now() / 1000) + 2;
    const k = await createKey({ name: "short", expires_at: expiresAt });
    const listed = (await (await admin("/admin/keys")).json()) as { data: { id: string; expires_at: number | null }[] };
    expect(listed.data.find((x) => x.id === k.id)?.expires_at).toBe(expiresAt);
    const models = () => call("/v1/models", { headers: { authorization: `Bearer ${k.key}` } });
    expect((await models()).status).toBe(200);
    await new Promise((r) => setTimeout(r, expiresAt * 1000 - Date.now() + 50));
    await expectOpenAIError(await models(), 401, "key_expired");
    // Lifting the expiry brings the key back.
    expect((await admin(`/admin/keys/${k.id}`, { method: "PATCH", json: { expires_at: null } })).status).toBe(200);
    expect((await models()).status).toBe(200);
  });
});
