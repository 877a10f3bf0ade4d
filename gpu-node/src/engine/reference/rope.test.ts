import { describe, expect, it } from "vitest";
import { applyRope, ropeCosSin, ropeInvFreq } from "./rope.js";

/** inv_freq is float32, as in HF: compare to 1e-6 relative. */
const expectRel = (actual: number, expected: number) => expect(Math.abs(actual / expected - 1)).toBeLessThan(1e-6);

describe("ropeInvFreq", () => {
  it("without rope_scaling is theta^(-2i/d)", () => {
    const inv = ropeInvFreq(8, 100, null);
    expect(Array.from(inv)).toEqual([1, 100 ** -0.25, 0.1, 100 ** -0.75].map(Math.fround));
  });

  it("llama3 scaling on a small case worked by hand", () => {
    // head_dim 8, theta 100: inv = [1, 0.316228, 0.1, 0.0316228], wavelength 2π/inv = [6.28, 19.87, 62.83, 198.7]
    // original 64, low 1, high 4, factor 4 → keep below 64/4 = 16, divide above 64/1 = 64, smooth between.
    //  i=0: 6.28 < 16 → 1
    //  i=1: smooth s = (64/19.87 − 1)/3; (1−s)·inv/4 + s·inv = inv/4 + (32·inv²/π − inv)/4 = 0.8/π  (inv² = 0.1)
    //  i=2: same algebra with inv² = 0.01 → 0.08/π
    //  i=3: 198.7 > 64 → 0.0316228/4
    const inv = ropeInvFreq(8, 100, { ropeType: "llama3", factor: 4, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 64 });
    const expected = [1, 0.8 / Math.PI, 0.08 / Math.PI, 100 ** -0.75 / 4];
    expected.forEach((e, i) => expectRel(inv[i], e));
  });

  it("llama3 scaling with the Llama 3.1 parameters (head_dim 128, theta 500000, factor 8)", () => {
    const inv = ropeInvFreq(128, 500000, { ropeType: "llama3", factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalMaxPositionEmbeddings: 8192 });
    const base = (i: number) => 500000 ** (-(2 * i) / 128);
    // high-frequency band (wavelength < 2048) is untouched
    expect(inv[0]).toBe(1);
    expectRel(inv[20], base(20)); // 0.0165604, wavelength 379
    // i=30: base 500000^(−60/128) = 0.002132, wavelength 2947 lies in [2048, 8192]: s = (8192/2947 − 1)/3 = 0.5928
    const b30 = base(30);
    const s = (8192 / ((2 * Math.PI) / b30) - 1) / 3;
    expect(s).toBeCloseTo(0.5928, 3);
    expectRel(inv[30], (1 - s) * (b30 / 8) + s * b30); // 0.00137189
    expectRel(inv[30], 0.0013718935677611381);
    // low-frequency band (wavelength > 8192) is divided by 8
    expectRel(inv[40], base(40) / 8);
    expectRel(inv[63], 3.068925988914511e-7);
  });

  it("rejects an odd head_dim", () => {
    expect(() => ropeInvFreq(7, 10000, null)).toThrow(/even/);
  });
});

describe("applyRope", () => {
  it("pairs dimension i with i + headDim/2 (HF rotate_half), not 2i with 2i+1", () => {
    const inv = ropeInvFreq(4, 10000, null); // [1, 0.01]
    const cos = new Float32Array(2);
    const sin = new Float32Array(2);
    ropeCosSin(inv, 3, cos, sin, 0);
    const x = new Float32Array([1, 2, 10, 20]);
    applyRope(x, 0, 1, 4, cos, sin, 0);
    const [c0, c1, s0, s1] = [Math.cos(3), Math.cos(0.03), Math.sin(3), Math.sin(0.03)];
    expect(x[0]).toBeCloseTo(1 * c0 - 10 * s0, 5);
    expect(x[1]).toBeCloseTo(2 * c1 - 20 * s1, 5);
    expect(x[2]).toBeCloseTo(10 * c0 + 1 * s0, 5);
    expect(x[3]).toBeCloseTo(20 * c1 + 2 * s1, 5);
  });

  it("rotates every head and is the identity at position 0", () => {
    const inv = ropeInvFreq(4, 10000, null);
    const cos = new Float32Array(2);
    const sin = new Float32Array(2);
    ropeCosSin(inv, 0, cos, sin, 0);
    const x = new Float32Array([1, 2, 3, 4, 5, 6, 7, 8]);
    applyRope(x, 0, 2, 4, cos, sin, 0);
    expect(Array.from(x)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
  });
});
