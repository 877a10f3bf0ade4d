/**
 * HMAC request signing between the edge and gpu-nodes (both directions use the same scheme).
 *
 *   canonical = METHOD \n PATH?QUERY \n TIMESTAMP \n NONCE \n hex(SHA-256(body)) [\n "budget=" BUDGET]
 *   x-seventy-signature = "v1=" + hex(HMAC-SHA256(secret, canonical))
 *
 * The edge's requests to nodes carry `x-seventy-budget`: the most tokens (prompt and completion,
 * every choice together) the request may use, which the node enforces. It is signed with the rest,
 * so neither a client nor anyone on the path can raise or drop it.
 *
 * The timestamp bounds replay to a window (60 s by default); the nonce lets a verifier refuse a
 * signature it has already seen inside that window. Only WebCrypto is used, so this runs unchanged
 * in Workers, browsers and Node 20+.
 */

export const SIGNATURE_HEADER = "x-seventy-signature";
export const TIMESTAMP_HEADER = "x-seventy-timestamp";
export const NONCE_HEADER = "x-seventy-nonce";
export const BUDGET_HEADER = "x-seventy-budget";
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

export function canonicalString(
  method: string,
  pathAndQuery: string,
  timestamp: string,
  nonce: string,
  bodyHash: string,
  budget?: string | null,
): string {
  const base = `${method.toUpperCase()}\n${pathAndQuery}\n${timestamp}\n${nonce}\n${bodyHash}`;
  return budget == null ? base : `${base}\nbudget=${budget}`;
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
  /** Token budget of the request (see BUDGET_HEADER); signed and sent when given. */
  budget?: number;
}

/** Returns the three headers to add to the request. */
export async function signRequest(input: SignInput): Promise<Record<string, string>> {
  const timestamp = String(input.timestamp ?? Math.floor(Date.now() / 1000));
  const nonce = input.nonce ?? crypto.randomUUID();
  const key = await hmacKey(input.secret);
  const budget = input.budget === undefined ? null : String(input.budget);
  const mac = await crypto.subtle.sign(
    "HMAC",
    key,
    encoder.encode(canonicalString(input.method, input.path, timestamp, nonce, await sha256Hex(input.body), budget)),
  );
  const headers: Record<string, string> = { [SIGNATURE_HEADER]: `v1=${toHex(mac)}`, [TIMESTAMP_HEADER]: timestamp, [NONCE_HEADER]: nonce };
  if (budget !== null) headers[BUDGET_HEADER] = budget;
  return headers;
}

export type VerifyResult =
  | { ok: true; nonce: string; timestamp: number; /** The signed token budget, or null when none was sent. */ budget: number | null }
  | { ok: false; reason: string };

export interface VerifyInput {
  method: string;
  path: string;
  body: Uint8Array | string;
  secret: string;
  headers: { get(name: string): string | null };
  /** Unix seconds; defaults to now. */
  now?: number;
  maxSkewSeconds?: number;
}

/**
 * Checks the signature in constant time (WebCrypto's `verify`) and the timestamp window.
 * Replay (a nonce seen before) is the caller's check, since only it keeps state.
 */
export async function verifyRequest(input: VerifyInput): Promise<VerifyResult> {
  const sig = input.headers.get(SIGNATURE_HEADER);
  const ts = input.headers.get(TIMESTAMP_HEADER);
  const nonce = input.headers.get(NONCE_HEADER);
  if (!sig || !ts || !nonce) return { ok: false, reason: "missing signature headers" };
  if (!/^\d{1,12}$/.test(ts)) return { ok: false, reason: "malformed timestamp" };
  if (nonce.length > 128) return { ok: false, reason: "malformed nonce" };
  const budget = input.headers.get(BUDGET_HEADER);
  if (budget !== null && !/^\d{1,12}$/.test(budget)) return { ok: false, reason: "malformed budget" };
  const timestamp = Number(ts);
  const now = input.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - timestamp) > (input.maxSkewSeconds ?? DEFAULT_MAX_SKEW_SECONDS)) {
    return { ok: false, reason: "stale timestamp" };
  }
  if (!sig.startsWith("v1=")) return { ok: false, reason: "unknown signature version" };
  const mac = fromHex(sig.slice(3));
  if (!mac || mac.length !== 32) return { ok: false, reason: "malformed signature" };
  const key = await hmacKey(input.secret);
  const valid = await crypto.subtle.verify(
    "HMAC",
    key,
    mac as Uint8Array<ArrayBuffer>,
    encoder.encode(canonicalString(input.method, input.path, ts, nonce, await sha256Hex(input.body), budget)),
  );
  return valid ? { ok: true, nonce, timestamp, budget: budget === null ? null : Number(budget) } : { ok: false, reason: "bad signature" };
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
