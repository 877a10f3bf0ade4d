/**
 * Counter-based randomness for sampling.
 *
 * `uniformFor(seed, i)` is the i-th output of a SplitMix64 generator started at `seed`, mapped to [0, 1):
 *
 *   z = seed + (i + 1) * 0x9E3779B97F4A7C15            (mod 2^64)
 *   z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
 *   z = (z ^ (z >> 27)) * 0x94D049BB133111EB
 *   z =  z ^ (z >> 31)
 *   u = (z >> 11) * 2^-53
 *
 * Because SplitMix64's state advances by a constant, output i can be computed directly without the
 * i outputs before it. So the draw for output token i of a request depends only on (seed, i): not on
 * the batch it ran in, nor on whether it was preempted and recomputed. The native engine must
 * implement exactly these lines (uint64 arithmetic) so both engines sample the same tokens.
 */

const MASK64 = (1n << 64n) - 1n;
const GAMMA = 0x9e3779b97f4a7c15n;
const MUL1 = 0xbf58476d1ce4e5b9n;
const MUL2 = 0x94d049bb133111ebn;
const TWO_POW_MINUS_53 = 2 ** -53;

/** The SplitMix64 finalizer: a bijective mix of a 64-bit value. */
export function mix64(z: bigint): bigint {
  z = ((z ^ (z >> 30n)) * MUL1) & MASK64;
  z = ((z ^ (z >> 27n)) * MUL2) & MASK64;
  return z ^ (z >> 31n);
}

/**
 * A uniform number in [0, 1) that is a pure function of `(seed, outputIndex)`.
 * `seed` is any safe integer (negative seeds wrap to their two's-complement uint64);
 * `outputIndex` a non-negative safe integer.
 *
 * @example
 * uniformFor(42, 0) === uniformFor(42, 0); // always
 * uniformFor(42, 0) !== uniformFor(42, 1); // almost surely
 */
export function uniformFor(seed: number, outputIndex: number): number {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
  if (!Number.isSafeInteger(outputIndex) || outputIndex < 0) {
    throw new RangeError(`outputIndex must be a non-negative safe integer, got ${outputIndex}`);
  }
  const state = (BigInt.asUintN(64, BigInt(seed)) + (BigInt(outputIndex) + 1n) * GAMMA) & MASK64;
  return Number(mix64(state) >> 11n) * TWO_POW_MINUS_53;
}
