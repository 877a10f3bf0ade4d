import { sha256, toHex, utf8 } from "../crypto/sha256";

/**
 * API keys look like `sk-` followed by 43 url-safe characters (32 random bytes). Only their
 * SHA-256 is stored; the key itself is shown once, when it is created.
 */

const KEY_PATTERN = /^sk-[A-Za-z0-9._-]{8,200}$/;

function base64url(bytes: Uint8Array): string {
  let bin = "";
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]!);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function hex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += bytes[i]!.toString(16).padStart(2, "0");
  return out;
}

export function generateApiKey(): string {
  return `sk-${base64url(crypto.getRandomValues(new Uint8Array(32)))}`;
}

/** Keys imported through the admin API (e.g. a fixed dev key) must still look like keys. */
export function isWellFormedKey(key: string): boolean {
  return KEY_PATTERN.test(key);
}

/** SHA-256 of the key, hex: what is stored and what names the key's KeyLimiter. */
export function hashApiKey(key: string): string {
  return toHex(sha256(utf8(key)));
}

/** What the admin API shows instead of the key: enough to recognise it, too little to use it. */
export function displayPrefix(key: string): string {
  return `${key.slice(0, 6)}...${key.slice(-4)}`;
}

export function newKeyId(): string {
  return `key_${hex(crypto.getRandomValues(new Uint8Array(12)))}`;
}

/** `Authorization: Bearer <token>` → token, or null. */
export function bearerToken(header: string | undefined | null): string | null {
  if (!header) return null;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m ? m[1]! : null;
}
