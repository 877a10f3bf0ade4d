import { describe, expect, it } from "vitest";
import { TokenBucket } from "../src/limits/bucket";
import { formatResetDuration } from "../src/limits/headers";

describe("TokenBucket", () => {
  it("starts full and refills continuously up to capacity", () => {
    const b = new TokenBucket(60, 60_000, 0);
    b.take(60);
    expect(b.level).toBe(0);
    b.refill(500);
    expect(b.level).toBeCloseTo(0.5, 10);
    b.refill(10 * 60_000);
    expect(b.level).toBe(60);
  });

  it("says how long until an amount is available", () => {
    const b = new TokenBucket(100, 60_000, 0);
    b.take(100);
    expect(b.msUntil(1)).toBe(600);
    expect(b.msUntil(50)).toBe(30_000);
    expect(b.msUntilFull()).toBe(60_000);
  });

  it("goes into debt when usage is charged after its lease is gone, and pays it back first", () => {
    const b = new TokenBucket(100, 60_000, 0);
    b.take(40);
    expect(b.level).toBe(60);
    b.take(60);
    b.take(20);
    expect(b.level).toBe(-20);
    expect(b.remaining()).toBe(0);
    expect(b.msUntil(1)).toBe(Math.ceil((21 * 60_000) / 100));
  });

  it("never becomes NaN: non-finite or negative amounts are refused", () => {
    const b = new TokenBucket(100, 60_000, 0);
    b.take(Number.NaN);
    b.give(Number.NaN);
    b.take(Number.POSITIVE_INFINITY);
    b.give(-50);
    b.take(-50);
    expect(b.level).toBe(100);
    b.restore({ level: Number.NaN, updatedAt: 0 });
    expect(b.level).toBe(100);
    b.restore({ level: -30, updatedAt: 0 });
    expect(b.level).toBe(-30);
    expect(b.msUntil(1)).toBe(Math.ceil((31 * 60_000) / 100));
  });

  it("keeps what was used when the limit changes", () => {
    const b = new TokenBucket(10, 60_000, 0);
    b.take(8);
    b.resize(20);
    expect(b.level).toBe(12);
    // 8 used in this window against a new limit of 5: 3 to pay back first.
    b.resize(5);
    expect(b.level).toBe(-3);
  });
});

describe("formatResetDuration", () => {
  it("writes durations as OpenAI does", () => {
    expect(formatResetDuration(0)).toBe("0ms");
    expect(formatResetDuration(20)).toBe("20ms");
    expect(formatResetDuration(1500)).toBe("1.5s");
    expect(formatResetDuration(6000)).toBe("6s");
    expect(formatResetDuration(360_000)).toBe("6m0s");
    expect(formatResetDuration(61_500)).toBe("1m1.5s");
    expect(formatResetDuration(3_600_000 + 120_000)).toBe("1h2m0s");
  });
});
