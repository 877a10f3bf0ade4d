import { createHash } from "node:crypto";

/** Identity of a full KV block's contents: the whole token prefix up to and including the block. */
export type BlockHash = string;

/**
 * hash(parent, tokens) = first 128 bits of sha256(parent ‖ tokens as u32 LE), base64; the first block's
 * parent is "root" and the salt (vLLM's cache_salt): requests with different salts never share blocks.
 * Chaining the parent makes a block's hash stand for the entire prefix, so two blocks with the same
 * tokens at different prefixes never collide; 128 bits keeps accidental collisions out of reach
 * (≈ 2^-64 at 2^32 blocks) while the key stays a 24-character string.
 */
export function hashBlockTokens(parent: BlockHash | null, tokenIds: readonly number[], salt = ""): BlockHash {
  const h = createHash("sha256");
  // The first block starts from the salt, so every later block of the chain carries it too.
  h.update(parent ?? `root\0${salt}`);
  h.update(Buffer.from(Uint32Array.from(tokenIds).buffer));
  return h.digest().subarray(0, 16).toString("base64");
}
