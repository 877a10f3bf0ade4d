import { sha256Hex, signRequest, verifyRequest } from "@seventy/sdk/protocol";
import { describe, expect, it } from "vitest";
import { hashApiKey } from "../src/auth/api-key";
import { Hmac256, sha256, toHex, utf8 } from "../src/crypto/sha256";
import { newNonce, signForNode, signSync } from "../src/proxy/sign";

const enc = new TextEncoder();

/** Awkward lengths around the 55/56/64-byte padding boundaries, and multi-block inputs. */
const LENGTHS = [0, 1, 3, 55, 56, 57, 63, 64, 65, 111, 119, 127, 128, 129, 1000, 4097];

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

describe("sha256 / Hmac256", () => {
  it("matches crypto.subtle on awkward lengths", async () => {
    for (const n of LENGTHS) {
      const data = bytes(n, n + 1);
      expect(toHex(sha256(data))).toBe(await sha256Hex(data));
    }
  });

  it("matches crypto.subtle HMAC for short and long keys", async () => {
    for (const keyLen of [1, 32, 64, 65, 200]) {
      const key = bytes(keyLen, keyLen);
      const ck = await crypto.subtle.importKey("raw", key, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
      const h = new Hmac256(key);
      for (const n of LENGTHS) {
        const msg = bytes(n, n * 7 + keyLen);
        expect(toHex(h.mac(msg))).toBe(toHex(new Uint8Array(await crypto.subtle.sign("HMAC", ck, msg))));
      }
    }
  });
});

describe("signing forwarded requests", () => {
  it("produces exactly the protocol's signRequest headers", async () => {
    for (const n of [0, 10, 300, 5000]) {
      const body = bytes(n, 3);
      const signed = { "x-seventy-node": "node-a", "x-seventy-key-id": "key_1" };
      const ours = signSync("POST", "/v1/chat/completions", body, "node-secret", 1_700_000_000, "nonce-1", signed);
      const theirs = await signRequest({ method: "POST", path: "/v1/chat/completions", body, secret: "node-secret", timestamp: 1_700_000_000, nonce: "nonce-1", signed });
      expect(ours).toEqual(theirs);
    }
  });

  it("is accepted by verifyRequest, on both the sync and the large-body path", async () => {
    for (const n of [100, 70_000]) {
      const body = bytes(n, 9);
      const headers = await signForNode("POST", "/v1/completions", body, "s3cret", { "x-seventy-node": "node-a" });
      const verdict = await verifyRequest({ method: "POST", path: "/v1/completions", body, secret: "s3cret", headers: new Headers(headers), nodeId: "node-a" });
      expect(verdict.ok).toBe(true);
      const elsewhere = await verifyRequest({ method: "POST", path: "/v1/completions", body, secret: "s3cret", headers: new Headers(headers), nodeId: "node-b" });
      expect(elsewhere.ok).toBe(false);
      const wrong = await verifyRequest({ method: "POST", path: "/v1/completions", body, secret: "other", headers: new Headers(headers) });
      expect(wrong.ok).toBe(false);
    }
  });

  it("hashes API keys as SHA-256 hex", async () => {
    const key = "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    expect(await hashApiKey(key)).toBe(await sha256Hex(enc.encode(key)));
  });
});

describe("nonces and short-string encoding", () => {
  it("hands out distinct 128-bit hex nonces across pool refills", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      const n = newNonce();
      expect(n).toMatch(/^[0-9a-f]{32}$/);
      seen.add(n);
    }
    expect(seen.size).toBe(1000);
  });

  it("encodes ASCII and non-ASCII strings exactly like TextEncoder", () => {
    for (const s of ["", "sk-abc_DEF.123", "v2\nPOST\n/v1/x", "näive ✓ 𝄞", "key\u0080"]) {
      expect([...utf8(s)]).toEqual([...enc.encode(s)]);
    }
  });

  it("signs non-ASCII signed header values exactly like signRequest", async () => {
    const body = bytes(50, 5);
    const signed = { "x-seventy-node": "nœud-1", "x-seventy-key-id": "key_1" };
    const ours = signSync("POST", "/v1/chat/completions", body, "clé", 1_700_000_000, "nonce-2", signed);
    const theirs = await signRequest({ method: "POST", path: "/v1/chat/completions", body, secret: "clé", timestamp: 1_700_000_000, nonce: "nonce-2", signed });
    expect(ours).toEqual(theirs);
  });
});
