import type { NodeCredential } from "@seventy/sdk/protocol";
import { Hmac256 } from "../crypto/sha256";

const encoder = new TextEncoder();
const cache = new Map<string, NodeCredential>();
let root: { secret: string; hmac: Hmac256 } | null = null;

function base64url(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/**
 * A node's two keys, derived from the edge's NODE_SECRET, the node id and the id of its current
 * credential:
 *
 *   edgeKey = HMAC-SHA256(NODE_SECRET, "seventy node key v1\nedge-to-node\n" + nodeId + "\n" + credentialId)
 *   nodeKey = HMAC-SHA256(NODE_SECRET, "seventy node key v1\nnode-to-edge\n" + nodeId + "\n" + credentialId)
 *
 * So the edge stores no key at all (only the random credential id), every node's keys differ, each
 * direction has its own key, and rotating or revoking a node's credential (a new or no credential
 * id) makes its old keys worthless without touching any other node.
 */
export function nodeKeys(nodeSecret: string, nodeId: string, credentialId: string): NodeCredential {
  const id = `${nodeId}\n${credentialId}`;
  if (root?.secret !== nodeSecret) {
    root = { secret: nodeSecret, hmac: new Hmac256(encoder.encode(nodeSecret)) };
    cache.clear();
  }
  let keys = cache.get(id);
  if (!keys) {
    const derive = (direction: string) => base64url(root!.hmac.mac(encoder.encode(`seventy node key v1\n${direction}\n${id}`)));
    keys = { nodeId, edgeKey: derive("edge-to-node"), nodeKey: derive("node-to-edge") };
    if (cache.size > 4096) cache.clear();
    cache.set(id, keys);
  }
  return keys;
}

/** A fresh credential id: 128 random bits. */
export function newCredentialId(): string {
  const b = new Uint8Array(16);
  crypto.getRandomValues(b);
  return base64url(b);
}
