import { DurableObject } from "cloudflare:workers";
import {
  NonceCache,
  nodeHeartbeatSchema,
  normalizeNodeUrl,
  verifyRequest,
  zodErrorBody,
  type ErrorBody,
  type NodeHeartbeat,
} from "@seventy/sdk/protocol";
import { config } from "../config";
import type { Env } from "../env";
import { newCredentialId, nodeKeys } from "./node-keys";

/** What the edge knows about a gpu-node: its last heartbeat plus bookkeeping. */
export interface PoolNode {
  id: string;
  url: string;
  /** The id of the node's current credential: the edge derives the key it signs requests to the node with from it. */
  credentialId: string;
  models: string[];
  engine: string;
  capacity: NodeHeartbeat["capacity"];
  load: NodeHeartbeat["load"];
  /** The node said it is draining. */
  reportedDraining: boolean;
  /** An admin drained it; it stays drained across heartbeats until undrained. */
  adminDrained: boolean;
  /** Epoch ms of the last heartbeat. */
  lastSeen: number;
  /** Epoch ms after which the node is out of the pool unless another heartbeat arrives. */
  expiresAt: number;
}

/** A node the admin registered: the only URL the edge will send its requests to, and its credential. */
export interface NodeRegistration {
  id: string;
  url: string;
  credentialId: string;
  /** Unix seconds. */
  created: number;
  /** Timestamp (Unix seconds) of the last accepted heartbeat: older ones are replays, even after a restart of this object. */
  lastHeartbeatTs: number;
  adminDrained: boolean;
}

export function isDraining(n: PoolNode): boolean {
  return n.reportedDraining || n.adminDrained;
}

export type HeartbeatResult = { ok: true; node: PoolNode } | { ok: false; status: 400 | 401 | 403; code: string; reason: string; body?: ErrorBody };

export interface SignedHeartbeat {
  nodeId: string;
  path: string;
  headers: Record<string, string>;
  body: Uint8Array;
}

const NODE_PREFIX = "node:";
const REG_PREFIX = "reg:";
// Nodes silent for this many TTLs are forgotten (they left the pool long before).
const FORGET_AFTER_TTLS = 50;

/**
 * The pool of gpu-nodes: one object for the whole edge. It holds the registrations (node id, the
 * URL requests may go to, the credential id) and the live state fed by heartbeats, which it verifies
 * itself with the node's own key. Isolates read snapshots of it and route locally.
 */
export class NodePool extends DurableObject<Env> {
  private readonly nodes = new Map<string, PoolNode>();
  private readonly registrations = new Map<string, NodeRegistration>();
  // Heartbeats from every isolate land here, so one cache sees every nonce.
  private readonly nonces = new NonceCache();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    for (const [, reg] of ctx.storage.kv.list<NodeRegistration>({ prefix: REG_PREFIX })) this.registrations.set(reg.id, reg);
    for (const [, node] of ctx.storage.kv.list<PoolNode>({ prefix: NODE_PREFIX })) {
      if (this.registrations.get(node.id)?.credentialId === node.credentialId) this.nodes.set(node.id, node);
    }
  }

  /** Registers a node; null when the id is taken (an id can never be taken over). */
  register(id: string, url: string): NodeRegistration | null {
    if (this.registrations.has(id)) return null;
    const reg: NodeRegistration = {
      id,
      url: normalizeNodeUrl(url),
      credentialId: newCredentialId(),
      created: Math.floor(Date.now() / 1000),
      lastHeartbeatTs: 0,
      adminDrained: false,
    };
    this.saveRegistration(reg);
    return reg;
  }

  /** A new credential for the node; the old one stops working at once (the node leaves the pool until it uses the new one). */
  rotate(id: string): NodeRegistration | null {
    const reg = this.registrations.get(id);
    if (!reg) return null;
    reg.credentialId = newCredentialId();
    this.saveRegistration(reg);
    this.forgetNode(id);
    return reg;
  }

  /** Removes the node and its credential at once. */
  revoke(id: string): boolean {
    if (!this.registrations.delete(id)) return false;
    this.ctx.storage.kv.delete(REG_PREFIX + id);
    this.forgetNode(id);
    return true;
  }

  listRegistrations(): NodeRegistration[] {
    return [...this.registrations.values()];
  }

  /**
   * A heartbeat: signed with the node's own key (node → edge), naming its registered id and URL.
   * The signature's headers and timestamp were prechecked by the worker before it read the body.
   */
  async heartbeat(hb: SignedHeartbeat): Promise<HeartbeatResult> {
    const reg = this.registrations.get(hb.nodeId);
    if (!reg) return { ok: false, status: 401, code: "invalid_signature", reason: "unknown node" };
    const secret = this.env.NODE_SECRET;
    if (!secret) return { ok: false, status: 401, code: "invalid_signature", reason: "no NODE_SECRET configured" };
    const key = nodeKeys(secret, reg.id, reg.credentialId).nodeKey;
    const verdict = await verifyRequest({
      method: "POST",
      path: hb.path,
      body: hb.body,
      secret: key,
      headers: new Headers(hb.headers),
      nodeId: reg.id,
    });
    if (!verdict.ok) return { ok: false, status: 401, code: "invalid_signature", reason: verdict.reason };
    // The registration may have been rotated while the signature was checked.
    if (this.registrations.get(hb.nodeId) !== reg) return { ok: false, status: 401, code: "invalid_signature", reason: "credential rotated" };
    if (verdict.timestamp < reg.lastHeartbeatTs || !this.nonces.use(`${reg.id}:${verdict.nonce}`)) {
      return { ok: false, status: 401, code: "replayed_signature", reason: "replayed heartbeat" };
    }
    let json: unknown;
    try {
      json = JSON.parse(new TextDecoder().decode(hb.body));
    } catch {
      return { ok: false, status: 400, code: "invalid_json", reason: "heartbeat is not JSON" };
    }
    const parsed = nodeHeartbeatSchema.safeParse(json);
    if (!parsed.success) return { ok: false, status: 400, code: "invalid_value", reason: "heartbeat schema", body: zodErrorBody(parsed.error) };
    const data = parsed.data;
    if (data.node_id !== reg.id) return { ok: false, status: 403, code: "node_mismatch", reason: `heartbeat names node ${data.node_id}` };
    if (normalizeNodeUrl(data.url) !== reg.url) {
      return { ok: false, status: 403, code: "node_url_mismatch", reason: "heartbeat URL differs from the registered one" };
    }

    const now = Date.now();
    const ttl = config(this.env).nodeTtlMs;
    // How long this heartbeat waited since it was signed (at least; the timestamp is in whole
    // seconds): an edge saturated with user traffic answers heartbeats late, and the node's next one
    // will wait as long. The node is given that much more, up to another TTL (a node whose clock is
    // behind gets at most that), so a busy edge does not drop the live nodes it is slow to hear from.
    const lag = Math.min(ttl, Math.max(0, now - verdict.timestamp * 1000 - 1000));
    const node: PoolNode = {
      id: reg.id,
      url: reg.url,
      credentialId: reg.credentialId,
      models: data.models,
      engine: data.engine,
      capacity: data.capacity,
      load: data.load,
      reportedDraining: data.draining ?? false,
      adminDrained: reg.adminDrained,
      lastSeen: now,
      expiresAt: now + ttl + lag,
    };
    this.nodes.set(node.id, node);
    if (verdict.timestamp > reg.lastHeartbeatTs) {
      reg.lastHeartbeatTs = verdict.timestamp;
      this.ctx.storage.kv.put(REG_PREFIX + reg.id, reg);
    }
    this.ctx.storage.put(NODE_PREFIX + node.id, node, { allowUnconfirmed: true }).catch(() => undefined);
    return { ok: true, node };
  }

  /** Every known node, live or not (callers check `expiresAt`); long-silent ones are forgotten. */
  snapshot(): PoolNode[] {
    const now = Date.now();
    const forgetBefore = now - FORGET_AFTER_TTLS * config(this.env).nodeTtlMs;
    const out: PoolNode[] = [];
    for (const node of this.nodes.values()) {
      if (node.lastSeen < forgetBefore) this.forgetNode(node.id);
      else out.push(node);
    }
    return out;
  }

  /** Drains (or undrains) a node; null when no such node is registered. */
  async setDrained(id: string, drained: boolean): Promise<{ registration: NodeRegistration; node: PoolNode | null } | null> {
    const reg = this.registrations.get(id);
    if (!reg) return null;
    reg.adminDrained = drained;
    this.saveRegistration(reg);
    const node = this.nodes.get(id) ?? null;
    if (node) {
      node.adminDrained = drained;
      await this.ctx.storage.put(NODE_PREFIX + id, node);
    }
    return { registration: reg, node };
  }

  private saveRegistration(reg: NodeRegistration): void {
    this.registrations.set(reg.id, reg);
    this.ctx.storage.kv.put(REG_PREFIX + reg.id, reg);
  }

  private forgetNode(id: string): void {
    this.nodes.delete(id);
    this.ctx.storage.delete(NODE_PREFIX + id).catch(() => undefined);
  }
}

export function nodePool(env: Env): DurableObjectStub<NodePool> {
  return env.NODE_POOL.get(env.NODE_POOL.idFromName("pool"));
}
