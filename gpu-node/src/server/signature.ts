import {
  CACHE_SALT_HEADER,
  checkSignatureHeaders,
  KEY_ID_HEADER,
  NonceCache,
  verifyRequest,
  type NodeCredential,
  type VerifyResult,
} from "@seventy/sdk/protocol";
import { HttpError } from "./http-error.js";

/** Who a verified request is for: the API key id the edge admitted it under, and its prefix-cache salt. */
export interface Tenant {
  keyId: string;
  cacheSalt: string;
}

/** Loopback mode: one tenant. */
export const LOCAL_TENANT: Tenant = { keyId: "", cacheSalt: "" };

/** Unix seconds: the first whole second after a node started, the oldest timestamp it accepts. */
export function signableFrom(startedAtMs: number): number {
  return Math.floor(startedAtMs / 1000) + 1;
}

/**
 * Verifies the edge's HMAC signature (this node's edge key) over method, path, timestamp, nonce,
 * body digest and the signed headers. In two steps: the headers before the body is read (missing,
 * malformed, stale, signed before this node started, or addressed to another node: 401 without
 * reading a byte of the body), then the signature and the nonce once it is.
 */
export class SignatureVerifier {
  private readonly nonces = new NonceCache();

  /**
   * @param notBefore Unix seconds: the first whole second after the node started. A request signed
   * before a restart can never be replayed to the restarted node, whose nonce cache is empty.
   */
  constructor(
    private readonly credential: NodeCredential,
    private readonly notBefore: number,
  ) {}

  /** The checks that need no body. */
  precheck(req: Request): void {
    reject(checkSignatureHeaders({ headers: req.headers, notBefore: this.notBefore, nodeId: this.credential.nodeId }));
  }

  /** Returns who asked (the tenant), the signature's nonce and the signed token budget (null when none was sent). */
  async verify(req: Request, body: Uint8Array): Promise<{ tenant: Tenant; nonce: string; budget: number | null }> {
    const url = new URL(req.url);
    const result = await verifyRequest({
      method: req.method,
      path: url.pathname + url.search,
      body,
      secret: this.credential.edgeKey,
      headers: req.headers,
      notBefore: this.notBefore,
      nodeId: this.credential.nodeId,
    });
    reject(result);
    if (!this.nonces.use(result.nonce)) {
      throw new HttpError(401, "Request signature rejected: replayed nonce.", { code: "invalid_signature" });
    }
    const keyId = req.headers.get(KEY_ID_HEADER) ?? "";
    return { tenant: { keyId, cacheSalt: req.headers.get(CACHE_SALT_HEADER) ?? keyId }, nonce: result.nonce, budget: result.budget };
  }
}

function reject(result: VerifyResult): asserts result is Extract<VerifyResult, { ok: true }> {
  if (!result.ok) throw new HttpError(401, `Request signature rejected: ${result.reason}.`, { code: "invalid_signature" });
}
