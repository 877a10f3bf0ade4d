import { env } from "cloudflare:workers";
import { reset, runInDurableObject } from "cloudflare:test";
import { afterEach, describe, expect, it } from "vitest";
import type { Env } from "../src/env";
import type { KeyRecord } from "../src/keys/record";
import type { KeyLimiter } from "../src/limits/key-limiter";
import { utcDay } from "../src/limits/key-limiter";

let n = 0;
function record(over: Partial<KeyRecord> = {}): KeyRecord {
  n++;
  return {
    id: `key_${n}`,
    name: "t",
    prefix: "sk-...",
    hash: `hash-${n}-${Math.random()}`,
    created: 0,
    disabled: false,
    models: null,
    limits: { rpm: 1000, tpm: 1_000_000, concurrency: 100 },
    budget: null,
    ...over,
  };
}

async function limiter(over: Partial<KeyRecord> = {}) {
  const r = record(over);
  const stub = env.KEY_LIMITER.get(env.KEY_LIMITER.idFromName(r.hash));
  await stub.configure(r);
  return { stub, record: r };
}

const TTL = 60_000;

afterEach(async () => {
  await reset();
});

describe("KeyLimiter", () => {
  it("admits exactly `concurrency` of 50 concurrent requests, and one more after a release", async () => {
    const { stub } = await limiter({ limits: { rpm: 1000, tpm: 1_000_000, concurrency: 10 } });
    const results = await Promise.all(Array.from({ length: 50 }, () => stub.admit("m", 10, TTL)));
    const admitted = results.filter((r) => r.ok);
    expect(admitted).toHaveLength(10);
    const refused = results.filter((r) => !r.ok);
    expect(refused.every((r) => !r.ok && r.status === 429 && r.code === "concurrency_limit_exceeded")).toBe(true);
    expect((await stub.state()).inFlight).toBe(10);
    const first = admitted[0]!;
    await stub.release(first.ok ? first.leaseId : "", { promptTokens: 1, completionTokens: 1, error: false });
    expect((await stub.admit("m", 10, TTL)).ok).toBe(true);
    expect((await stub.admit("m", 10, TTL)).ok).toBe(false);
  });

  it("admits exactly `rpm` of 50 concurrent requests and says when to retry", async () => {
    const { stub } = await limiter({ limits: { rpm: 10, tpm: 1_000_000, concurrency: 100 } });
    const results = await Promise.all(Array.from({ length: 50 }, () => stub.admit("m", 1, TTL)));
    expect(results.filter((r) => r.ok)).toHaveLength(10);
    const refusal = results.find((r) => !r.ok);
    expect(refusal).toMatchObject({ ok: false, status: 429, code: "rate_limit_exceeded" });
    // One request refills every 6 s.
    expect(refusal && !refusal.ok && refusal.retryAfterMs).toBeGreaterThan(5000);
    expect(refusal && !refusal.ok && refusal.retryAfterMs).toBeLessThanOrEqual(6000);
    expect(refusal && !refusal.ok && refusal.rate?.remainingRequests).toBe(0);
  });

  it("reserves the estimate and reconciles it with the real usage", async () => {
    const { stub } = await limiter({ limits: { rpm: 1000, tpm: 60_000, concurrency: 100 } });
    const a = await stub.admit("m", 5000, TTL);
    if (!a.ok) throw new Error("refused");
    // tpm 60000 refills 1 token/ms: the remaining count may have grown a little since.
    expect(a.rate.remainingTokens).toBeLessThanOrEqual(55_000);
    expect((await stub.state()).reservedTokens).toBe(5000);
    await stub.release(a.leaseId, { promptTokens: 100, completionTokens: 20, error: false });
    const s = await stub.state();
    expect(s.reservedTokens).toBe(0);
    expect(s.inFlight).toBe(0);
    expect(s.remainingTokens).toBeGreaterThanOrEqual(60_000 - 120);
    // Usage above the reservation is not believed (the node cannot have used it): the reservation is charged.
    const b = await stub.admit("m", 10, TTL);
    if (!b.ok) throw new Error("refused");
    await stub.release(b.leaseId, { promptTokens: 70_000, completionTokens: 0, error: false });
    expect((await stub.state()).remainingTokens).toBeLessThanOrEqual(60_000);
    expect((await stub.usage())[0]).toMatchObject({ prompt_tokens: 110, completion_tokens: 20 });
  });

  it("never lets a malformed usage report poison the buckets, the budget or the usage rows", async () => {
    const { stub } = await limiter({ limits: { rpm: 1000, tpm: 1000, concurrency: 100 }, budget: { tokens: 2000, period: "day" } });
    const bad = [Number.NaN, -5, 1.5, Number.POSITIVE_INFINITY, "12" as unknown as number];
    for (const value of bad) {
      const a = await stub.admit("m", 90, TTL);
      if (!a.ok) throw new Error(`refused: ${JSON.stringify(a)}`);
      await stub.release(a.leaseId, { promptTokens: value, completionTokens: 1, error: false });
    }
    const s = await stub.state();
    expect(Number.isFinite(s.remainingTokens)).toBe(true);
    const row = (await stub.usage())[0]!;
    expect(row).toMatchObject({ requests: 5, prompt_tokens: 450, completion_tokens: 0 });
    // 450 of tpm 1000 used: 10 requests of 900 are not all admitted, exactly none is.
    const results = await Promise.all(Array.from({ length: 10 }, () => stub.admit("m", 900, TTL)));
    expect(results.filter((r) => r.ok)).toHaveLength(0);
  });

  it("renews the leases of requests still running", async () => {
    const { stub } = await limiter({ limits: { rpm: 1000, tpm: 1_000_000, concurrency: 1 } });
    const a = await stub.admit("m", 1, 200);
    if (!a.ok) throw new Error("refused");
    for (let i = 0; i < 4; i++) {
      await new Promise((r) => setTimeout(r, 100));
      expect(await stub.renew([a.leaseId], 200)).toEqual([]);
    }
    // Held past its first TTL by renewals: a second request is still refused.
    expect(await stub.admit("m", 1, TTL)).toMatchObject({ ok: false, code: "concurrency_limit_exceeded" });
    await new Promise((r) => setTimeout(r, 250));
    expect((await stub.admit("m", 1, TTL)).ok).toBe(true);
    expect(await stub.renew([a.leaseId], 200)).toEqual([a.leaseId]);
  });

  it("keeps bucket debt and period usage across a restart of the object", async () => {
    const { stub } = await limiter({ limits: { rpm: 1000, tpm: 1000, concurrency: 10 }, budget: { tokens: 1000, period: "day" } });
    const a = await stub.admit("m", 900, TTL);
    if (!a.ok) throw new Error("refused");
    await stub.release(a.leaseId, { promptTokens: 800, completionTokens: 100, error: false });
    const remaining = await runInDurableObject(stub, (instance, state) => {
      instance.flush();
      const Fresh = instance.constructor as new (s: DurableObjectState, e: Env) => KeyLimiter;
      const fresh = new Fresh(state, env);
      return { tokens: fresh.state().remainingTokens, admit: fresh.admit("m", 200, TTL) };
    });
    // The restarted object remembers the 900 tokens: the bucket is not full again, and the budget has 100 left.
    expect(remaining.tokens).toBeLessThan(500);
    expect(remaining.admit).toMatchObject({ ok: false, code: "insufficient_quota" });
  });

  it("refuses a request larger than the whole token limit", async () => {
    const { stub } = await limiter({ limits: { rpm: 1000, tpm: 1000, concurrency: 100 } });
    expect(await stub.admit("m", 1001, TTL)).toMatchObject({ ok: false, status: 429, code: "tokens_per_minute_exceeded" });
    expect((await stub.admit("m", 1000, TTL)).ok).toBe(true);
  });

  it("meters usage by day, errors and refusals included", async () => {
    const { stub } = await limiter({ limits: { rpm: 2, tpm: 1_000_000, concurrency: 100 } });
    const a = await stub.admit("m", 20, TTL);
    const b = await stub.admit("m", 20, TTL);
    await stub.admit("m", 20, TTL); // refused: rpm
    if (!a.ok || !b.ok) throw new Error("refused");
    await stub.release(a.leaseId, { promptTokens: 11, completionTokens: 5, error: false });
    await stub.release(b.leaseId, { promptTokens: 3, completionTokens: 0, error: true });
    const rows = await stub.usage();
    expect(rows).toEqual([
      { day: utcDay(Date.now()), requests: 2, prompt_tokens: 14, completion_tokens: 5, errors: 1, rate_limited: 1 },
    ]);
    expect(await stub.usage("2000-01-01", "2000-01-02")).toEqual([]);
  });

  it("enforces a token budget across reservations and usage", async () => {
    const { stub } = await limiter({ budget: { tokens: 100, period: "day" } });
    const a = await stub.admit("m", 60, TTL);
    expect(a.ok).toBe(true);
    // 60 reserved + 50 > 100
    expect(await stub.admit("m", 50, TTL)).toMatchObject({ ok: false, status: 429, code: "insufficient_quota", type: "insufficient_quota" });
    if (!a.ok) throw new Error("refused");
    await stub.release(a.leaseId, { promptTokens: 20, completionTokens: 10, error: false });
    expect((await stub.admit("m", 70, TTL)).ok).toBe(true);
    expect((await stub.admit("m", 1, TTL)).ok).toBe(false);
  });

  it("refuses unknown, disabled and deleted keys and models the key may not use", async () => {
    const unknown = env.KEY_LIMITER.get(env.KEY_LIMITER.idFromName("never-configured"));
    expect(await unknown.admit("m", 1, TTL)).toMatchObject({ ok: false, status: 401, code: "invalid_api_key" });
    const { stub, record: r } = await limiter({ models: ["allowed"] });
    expect(await stub.admit("other", 1, TTL)).toMatchObject({ ok: false, status: 403, code: "model_not_allowed", param: "model" });
    expect((await stub.admit("allowed", 1, TTL)).ok).toBe(true);
    await stub.configure({ ...r, disabled: true });
    expect(await stub.admit("allowed", 1, TTL)).toMatchObject({ ok: false, status: 401 });
    await stub.configure({ ...r, disabled: false });
    expect((await stub.check("allowed")).ok).toBe(true);
    await stub.revoke();
    expect(await stub.check(null)).toMatchObject({ ok: false, status: 401, code: "invalid_api_key" });
  });

  it("reclaims leases whose release never came", async () => {
    const { stub } = await limiter({ limits: { rpm: 1000, tpm: 1_000_000, concurrency: 1 } });
    expect((await stub.admit("m", 1, 1)).ok).toBe(true);
    await new Promise((r) => setTimeout(r, 5));
    expect((await stub.admit("m", 1, TTL)).ok).toBe(true);
  });

  it("keeps flushed leases and usage across a restart of the object", async () => {
    const { stub } = await limiter({ limits: { rpm: 1000, tpm: 1_000_000, concurrency: 2 } });
    expect((await stub.admit("m", 1, TTL)).ok).toBe(true);
    // A fresh instance over the same storage, as after an eviction.
    const restored = await runInDurableObject(stub, (instance, state) => {
      const Fresh = instance.constructor as new (s: DurableObjectState, e: Env) => KeyLimiter;
      const before = new Fresh(state, env).state().inFlight;
      instance.flush();
      return { before, after: new Fresh(state, env).state().inFlight };
    });
    // Written behind: a restart before the flush would not know the lease, one after does.
    expect(restored).toEqual({ before: 0, after: 1 });
  });
});
