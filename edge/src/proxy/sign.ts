import { canonicalString, NONCE_HEADER, SIGNATURE_HEADER, signRequest, TIMESTAMP_HEADER } from "@seventy/sdk/protocol";
import { randomHex128 } from "../crypto/random";
import { Hmac256, sha256, toHex, utf8 } from "../crypto/sha256";

/** Bodies up to this size are hashed in JS; larger ones go to crypto.subtle (native, but async). */
const SYNC_LIMIT = 64 * 1024;
// One HMAC state per node key in use (a key's pads are absorbed once).
const hmacs = new Map<string, Hmac256>();

/** A nonce needs no secrecy, only to never repeat (the node refuses a nonce it has seen; the signature covers it). */
export const newNonce = randomHex128;

/**
 * The headers of the protocol's request signature (`signRequest` in @seventy/sdk/protocol), with
 * the node's own edge → node key and the signed headers (`signed`: the node id, the key id...):
 *
 *   canonical = "v2" \n METHOD \n PATH \n TIMESTAMP \n NONCE \n hex(SHA-256(body)) \n name:value ...
 *   x-seventy-signature = "v2=" + hex(HMAC-SHA256(key, canonical))
 *
 * computed synchronously for ordinary bodies, which saves the edge two trips through
 * crypto.subtle per request. Tests check it against `signRequest` byte for byte.
 */
export async function signForNode(
  method: string,
  path: string,
  body: Uint8Array,
  key: string,
  signed: Record<string, string>,
): Promise<Record<string, string>> {
  if (body.byteLength > SYNC_LIMIT) return signRequest({ method, path, body, secret: key, signed });
  return signSync(method, path, body, key, Math.floor(Date.now() / 1000), newNonce(), signed);
}

export function signSync(
  method: string,
  path: string,
  body: Uint8Array,
  key: string,
  timestamp: number,
  nonce: string,
  signed: Record<string, string> = {},
): Record<string, string> {
  let hmac = hmacs.get(key);
  if (!hmac) {
    if (hmacs.size > 1024) hmacs.clear();
    hmacs.set(key, (hmac = new Hmac256(utf8(key))));
  }
  const ts = String(timestamp);
  const canonical = canonicalString(method, path, ts, nonce, toHex(sha256(body)), (h) => signed[h]);
  // The signed headers as given, plus the signature's three.
  const out: Record<string, string> = Object.assign({}, signed);
  out[SIGNATURE_HEADER] = `v2=${toHex(hmac.mac(utf8(canonical)))}`;
  out[TIMESTAMP_HEADER] = ts;
  out[NONCE_HEADER] = nonce;
  return out;
}
