import { describe, expect, it } from "vitest";
import { uniformFor } from "./rng.js";

describe("uniformFor", () => {
  it("is SplitMix64: seed 0 gives the published first outputs", () => {
    // SplitMix64(0) → 0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f
    expect(uniformFor(0, 0)).toBe(Number(0xe220a8397b1dcdafn >> 11n) * 2 ** -53);
    expect(uniformFor(0, 1)).toBe(Number(0x6e789e6aa1b965f4n >> 11n) * 2 ** -53);
    expect(uniformFor(0, 2)).toBe(Number(0x06c45d188009454fn >> 11n) * 2 ** -53);
  });

  it("is a pure function of (seed, index), in [0, 1)", () => {
    const draws = Array.from({ length: 1000 }, (_, i) => uniformFor(1234, i));
    expect(Array.from({ length: 1000 }, (_, i) => uniformFor(1234, i))).toEqual(draws);
    for (const u of draws) {
      expect(u).toBeGreaterThanOrEqual(0);
      expect(u).toBeLessThan(1);
    }
    expect(new Set(draws).size).toBe(1000);
    const mean = draws.reduce((a, b) => a + b, 0) / draws.length;
    expect(mean).toBeGreaterThan(0.45);
    expect(mean).toBeLessThan(0.55);
  });

  it("differs across seeds, including negative and large ones", () => {
    const seeds = [0, 1, 2, -1, 2 ** 40, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER];
    expect(new Set(seeds.map((s) => uniformFor(s, 5))).size).toBe(seeds.length);
    expect(uniformFor(-1, 3)).toBe(Number(7862637804313477842n >> 11n) * 2 ** -53); // seed −1 ≡ 2^64 − 1
  });

  it("rejects non-integers", () => {
    expect(() => uniformFor(1.5, 0)).toThrow(RangeError);
    expect(() => uniformFor(1, -1)).toThrow(RangeError);
    expect(() => uniformFor(1, 0.5)).toThrow(RangeError);
  });
});
