import { DurableObject } from "cloudflare:workers";
import { NonceCache, type NodeHeartbeat } from "@seventy/sdk/protocol";
import { config } from "../config";
import type { Env } from "../env";

/** What the edge knows about a gpu-node: its last heartbeat plus bookkeeping. */
export interface PoolNode {
  id: string;
  url: string;
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

export function isDraining(n: PoolNode): boolean {
  return n.reportedDraining || n.adminDrained;
}

export type HeartbeatResult = { ok: true; node: PoolNode } | { ok: false; reason: string };

const NODE_PREFIX = "node:";
// Nodes silent for this many TTLs are forgotten (they left the pool long before).
const FORGET_AFTER_TTLS = 50;

/**
 * The pool of gpu-nodes: one object for the whole edge. Heartbeats (already signature-checked by
 * the worker) update it; isolates read snapshots of it and route locally.
 */
export class NodePool extends DurableObject<Env> {
  private readonly nodes = new Map<string, PoolNode>();
  // Heartbeats from every isolate land here, so one cache sees every nonce.
  private readonly nonces = new NonceCache();

  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    for (const [, node] of ctx.storage.kv.list<PoolNode>({ prefix: NODE_PREFIX })) this.nodes.set(node.id, node);
  }

  heartbeat(hb: NodeHeartbeat, nonce: string): HeartbeatResult {
    if (!this.nonces.use(nonce)) return { ok: false, reason: "replayed heartbeat" };
    const now = Date.now();
    const prev = this.nodes.get(hb.node_id);
    const node: PoolNode = {
      id: hb.node_id,
      url: hb.url.replace(/\/+$/, ""),
      models: hb.models,
      engine: hb.engine,
      capacity: hb.capacity,
      load: hb.load,
      reportedDraining: hb.draining ?? false,
      adminDrained: prev?.adminDrained ?? false,
      lastSeen: now,
      expiresAt: now + config(this.env).nodeTtlMs,
    };
    this.nodes.set(node.id, node);
    this.ctx.storage.put(NODE_PREFIX + node.id, node, { allowUnconfirmed: true }).catch(() => undefined);
    return { ok: true, node };
  }

  /** Every known node, live or not (callers check `expiresAt`); long-silent ones are forgotten. */
  snapshot(): PoolNode[] {
    const now = Date.now();
    const forgetBefore = now - FORGET_AFTER_TTLS * config(this.env).nodeTtlMs;
    const out: PoolNode[] = [];
    for (const node of this.nodes.values()) {
      if (node.lastSeen < forgetBefore) {
        this.nodes.delete(node.id);
        this.ctx.storage.delete(NODE_PREFIX + node.id).catch(() => undefined);
      } else {
        out.push(node);
      }
    }
    return out;
  }

  /** Drains (or undrains) a node; null when no such node is known. */
  async setDrained(id: string, drained: boolean): Promise<PoolNode | null> {
    const node = this.nodes.get(id);
    if (!node) return null;
    node.adminDrained = drained;
    await this.ctx.storage.put(NODE_PREFIX + id, node);
    return node;
  }
}

export function nodePool(env: Env): DurableObjectStub<NodePool> {
  return env.NODE_POOL.get(env.NODE_POOL.idFromName("pool"));
}
