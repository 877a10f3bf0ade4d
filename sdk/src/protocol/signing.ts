/**
 * HMAC request signing between the edge and gpu-nodes. Each node has its own pair of keys, one per
 * direction (the edge signs requests to the node with one, the node signs heartbeats to the edge
 * with the other), so no key serves two purposes or two nodes.
 *
 *   canonical = "v2" \n METHOD \n PATH?QUERY \n TIMESTAMP \n NONCE \n hex(SHA-256(body))
 *               \n x-seventy-node:VALUE \n x-seventy-key-id:VALUE \n ...   (every SIGNED_HEADERS entry, "" when absent)
 *   x-seventy-signature = "v2=" + hex(HMAC-SHA256(key, canonical))
 *
 * `x-seventy-node` names the node the request is for (or the node a heartbeat is from), so a
 * signature is valid for one node only. The timestamp bounds replay to a window (60 s by default);
 * the nonce lets a verifier refuse a signature it has already seen inside that window. Only
 * WebCrypto is used, so this runs unchanged in Workers, browsers and Node 20+.
 */

export const SIGNATURE_HEADER = "x-seventy-signature";
export const TIMESTAMP_HEADER = "x-seventy-timestamp";
export const NONCE_HEADER = "x-seventy-nonce";
/** The node a request is addressed to (edge → node), or a heartbeat comes from (node → edge). */
export const NODE_ID_HEADER = "x-seventy-node";
/** The API key id the edge admitted the request under: the node's queue shares and fairness are per key. */
export const KEY_ID_HEADER = "x-seventy-key-id";
/** The prefix-cache salt of the request's tenant (the key id, or a salt the admin shares between keys). */
export const CACHE_SALT_HEADER = "x-seventy-cache-salt";
/** Headers covered by the signature, in canonical order. Append only: the order is part of the format. */
export const SIGNED_HEADERS: readonly string[] = [NODE_ID_HEADER, KEY_ID_HEADER, CACHE_SALT_HEADER];
export const DEFAULT_MAX_SKEW_SECONDS = 60;

const encoder = new TextEncoder();
const keyCache = new Map<string, Promise<CryptoKey>>();

function hmacKey(secret: string): Promise<CryptoKey> {
  let key = keyCache.get(secret);
  if (!key) {
    key = crypto.subtle.importKey("raw", encoder.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
      "sign",
      "verify",
    ]);
    if (keyCache.size > 16) keyCache.clear();
    keyCache.set(secret, key);
  }
  return key;
}

function toHex(buf: ArrayBuffer): string {
  const bytes = new Uint8Array(buf);
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += bytes[i]!.toString(16).padStart(2, "0");
  return out;
}

function fromHex(hex: string): Uint8Array | null {
  if (hex.length % 2 !== 0 || !/^[0-9a-f]*$/.test(hex)) return null;
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

export async function sha256Hex(body: Uint8Array | string): Promise<string> {
  const data = typeof body === "string" ? encoder.encode(body) : body;
  return toHex(await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>));
}

/** The canonical string; `header(name)` gives a signed header's value (absent: ""). */
export function canonicalString(
  method: string,
  pathAndQuery: string,
  timestamp: string,
  nonce: string,
  bodyHash: string,
  header: (name: string) => string | null | undefined,
): string {
  let out = `v2\n${method.toUpperCase()}\n${pathAndQuery}\n${timestamp}\n${nonce}\n${bodyHash}`;
  for (const name of SIGNED_HEADERS) out += `\n${name}:${header(name) ?? ""}`;
  return out;
}

export interface SignInput {
  method: string;
  /** Path plus query string, e.g. "/v1/chat/completions". */
  path: string;
  body: Uint8Array | string;
  secret: string;
  /** Unix seconds; defaults to now. */
  timestamp?: number;
  nonce?: string;
  /** Values of SIGNED_HEADERS to send and sign (e.g. the node id); others are signed as "". */
  signed?: Record<string, string>;
}

/** Returns the headers to add to the request: the signature's three and the signed ones given. */
export async function signRequest(input: SignInput): Promise<Record<string, string>> {
  const timestamp = String(input.timestamp ?? Math.floor(Date.now() / 1000));
  const nonce = input.nonce ?? crypto.randomUUID();
  const signed = input.signed ?? {};
  for (const name of Object.keys(signed)) if (!SIGNED_HEADERS.includes(name)) throw new Error(`${name} is not a signed header`);
  const key = await hmacKey(input.secret);
  const text = canonicalString(input.method, input.path, timestamp, nonce, await sha256Hex(input.body), (h) => signed[h]);
  const mac = await crypto.subtle.sign("HMAC", key, encoder.encode(text));
  return { ...signed, [SIGNATURE_HEADER]: `v2=${toHex(mac)}`, [TIMESTAMP_HEADER]: timestamp, [NONCE_HEADER]: nonce };
}

export type VerifyResult = { ok: true; nonce: string; timestamp: number } | { ok: false; reason: string };

export interface HeaderCheckInput {
  headers: { get(name: string): string | null };
  /** Unix seconds; defaults to now. */
  now?: number;
  maxSkewSeconds?: number;
  /** Unix seconds: older timestamps are refused (a node passes its start, so nothing signed before a restart replays). */
  notBefore?: number;
  /** The x-seventy-node value the verifier expects (its own id, or the node whose key it holds). */
  nodeId?: string;
}

/**
 * Everything that can be checked before the body is read: the headers are present and well formed,
 * the timestamp is inside the window (and not before `notBefore`), the request is for this node.
 * A verifier calls this first, so an unsigned or stale request is refused without reading its body.
 */
export function checkSignatureHeaders(input: HeaderCheckInput): VerifyResult {
  const sig = input.headers.get(SIGNATURE_HEADER);
  const ts = input.headers.get(TIMESTAMP_HEADER);
  const nonce = input.headers.get(NONCE_HEADER);
  if (!sig || !ts || !nonce) return { ok: false, reason: "missing signature headers" };
  if (!/^\d{1,12}$/.test(ts)) return { ok: false, reason: "malformed timestamp" };
  if (nonce.length > 128) return { ok: false, reason: "malformed nonce" };
  if (!sig.startsWith("v2=")) return { ok: false, reason: "unknown signature version" };
  if (!/^[0-9a-f]{64}$/.test(sig.slice(3))) return { ok: false, reason: "malformed signature" };
  const timestamp = Number(ts);
  const now = input.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - timestamp) > (input.maxSkewSeconds ?? DEFAULT_MAX_SKEW_SECONDS)) {
    return { ok: false, reason: "stale timestamp" };
  }
  if (input.notBefore !== undefined && timestamp < input.notBefore) return { ok: false, reason: "signed before this node started" };
  if (input.nodeId !== undefined && input.headers.get(NODE_ID_HEADER) !== input.nodeId) {
    return { ok: false, reason: "signed for another node" };
  }
  return { ok: true, nonce, timestamp };
}

export interface VerifyInput extends HeaderCheckInput {
  method: string;
  path: string;
  body: Uint8Array | string;
  secret: string;
}

/**
 * Checks the headers (see `checkSignatureHeaders`) and the signature in constant time (WebCrypto's
 * `verify`). Replay (a nonce seen before) is the caller's check, since only it keeps state.
 */
export async function verifyRequest(input: VerifyInput): Promise<VerifyResult> {
  const pre = checkSignatureHeaders(input);
  if (!pre.ok) return pre;
  const mac = fromHex(input.headers.get(SIGNATURE_HEADER)!.slice(3))!;
  const key = await hmacKey(input.secret);
  const text = canonicalString(
    input.method,
    input.path,
    input.headers.get(TIMESTAMP_HEADER)!,
    pre.nonce,
    await sha256Hex(input.body),
    (h) => input.headers.get(h),
  );
  const valid = await crypto.subtle.verify("HMAC", key, mac as Uint8Array<ArrayBuffer>, encoder.encode(text));
  return valid ? pre : { ok: false, reason: "bad signature" };
}

/**
 * Remembers nonces for the replay window. Entries expire with the window, so memory is bounded
 * by the request rate × window.
 */
export class NonceCache {
  private readonly seen = new Map<string, number>();
  constructor(private readonly windowSeconds = DEFAULT_MAX_SKEW_SECONDS * 2) {}

  /** Returns false when the nonce was already used. */
  use(nonce: string, nowSeconds = Math.floor(Date.now() / 1000)): boolean {
    if (this.seen.size > 1024) this.prune(nowSeconds);
    const exp = this.seen.get(nonce);
    if (exp !== undefined && exp >= nowSeconds) return false;
    this.seen.set(nonce, nowSeconds + this.windowSeconds);
    return true;
  }

  private prune(now: number): void {
    for (const [k, exp] of this.seen) if (exp < now) this.seen.delete(k);
  }
}
