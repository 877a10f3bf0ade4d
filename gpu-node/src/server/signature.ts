import { NonceCache, verifyRequest } from "@seventy/sdk/protocol";
import { HttpError } from "./http-error.js";

/**
 * Verifies the edge's HMAC signature over method, path, timestamp, nonce and body digest.
 * Missing, wrong, stale (> 60 s) or replayed signatures are a 401.
 */
export class SignatureVerifier {
  private readonly nonces = new NonceCache();
  constructor(private readonly secret: string) {}

  /** Returns the signature's nonce and the signed token budget (null when none was sent). */
  async verify(req: Request, body: Uint8Array): Promise<{ nonce: string; budget: number | null }> {
    const url = new URL(req.url);
    const result = await verifyRequest({
      method: req.method,
      path: url.pathname + url.search,
      body,
      secret: this.secret,
      headers: req.headers,
    });
    if (!result.ok) throw new HttpError(401, `Request signature rejected: ${result.reason}.`, { code: "invalid_signature" });
    if (!this.nonces.use(result.nonce)) {
      throw new HttpError(401, "Request signature rejected: replayed nonce.", { code: "invalid_signature" });
    }
    return { nonce: result.nonce, budget: result.budget };
  }
}
