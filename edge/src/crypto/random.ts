import { toHex } from "./sha256";

/**
 * 128 random bits in hex, cut from a pool filled 256 at a time (one runtime call instead of one
 * per use). Unique like a random UUID: for nonces and request ids, which need to never repeat,
 * not to be secret.
 */
const BYTES = 16;
const pool = new Uint8Array(BYTES * 256);
let poolAt = pool.length;

export function randomHex128(): string {
  if (poolAt >= pool.length) {
    crypto.getRandomValues(pool);
    poolAt = 0;
  }
  const out = toHex(pool.subarray(poolAt, poolAt + BYTES));
  poolAt += BYTES;
  return out;
}
