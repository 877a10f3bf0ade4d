import { BUDGET_HEADER, canonicalString, NONCE_HEADER, SIGNATURE_HEADER, signRequest, TIMESTAMP_HEADER } from "@seventy/sdk/protocol";
import { Hmac256, sha256, toHex } from "../crypto/sha256";

/** Bodies up to this size are hashed in JS; larger ones go to crypto.subtle (native, but async). */
const SYNC_LIMIT = 64 * 1024;
const encoder = new TextEncoder();
let cached: { secret: string; hmac: Hmac256 } | null = null;

/**
 * The headers of the protocol's request signature (`signRequest` in @seventy/sdk/protocol):
 *
 *   canonical = METHOD \n PATH \n TIMESTAMP \n NONCE \n hex(SHA-256(body)) [\n budget=BUDGET]
 *   x-seventy-signature = "v1=" + hex(HMAC-SHA256(secret, canonical))
 *
 * computed synchronously for ordinary bodies, which saves the edge two trips through
 * crypto.subtle per request. Tests check it against `signRequest` byte for byte.
 */
export async function signForNode(
  method: string,
  path: string,
  body: Uint8Array,
  secret: string,
  budget?: number,
): Promise<Record<string, string>> {
  if (body.byteLength > SYNC_LIMIT) return signRequest({ method, path, body, secret, budget });
  return signSync(method, path, body, secret, Math.floor(Date.now() / 1000), crypto.randomUUID(), budget);
}

export function signSync(
  method: string,
  path: string,
  body: Uint8Array,
  secret: string,
  timestamp: number,
  nonce: string,
  budget?: number,
): Record<string, string> {
  if (cached?.secret !== secret) cached = { secret, hmac: new Hmac256(encoder.encode(secret)) };
  const ts = String(timestamp);
  const b = budget === undefined ? null : String(budget);
  const canonical = canonicalString(method, path, ts, nonce, toHex(sha256(body)), b);
  const headers: Record<string, string> = {
    [SIGNATURE_HEADER]: `v1=${toHex(cached.hmac.mac(encoder.encode(canonical)))}`,
    [TIMESTAMP_HEADER]: ts,
    [NONCE_HEADER]: nonce,
  };
  if (b !== null) headers[BUDGET_HEADER] = b;
  return headers;
}
