import type { EdgeConfig } from "../config";
import type { Env } from "../env";
import { isDraining, nodePool, type PoolNode } from "./node-pool";
import { planRoute, type RouteCandidate } from "./router";

export type RouteResult =
  | { ok: true; nodes: PoolNode[] }
  | { ok: false; status: 404 | 503; message: string; code: string };

interface Candidate extends RouteCandidate {
  node: PoolNode;
}

/**
 * An isolate's copy of the pool. Routing reads it without any I/O; it is refreshed from the
 * NodePool object at most every POOL_CACHE_MS (in the background while it is merely stale).
 * It also tracks what this isolate has in flight to each node, nodes this isolate saw fail, and
 * nodes it saw answer: an answer is as good a sign of life as a heartbeat, so a node whose
 * heartbeats are late because the edge is busy stays in routing while it keeps answering.
 */
export class PoolView {
  private nodes: PoolNode[] = [];
  private fetchedAt = 0;
  private refreshStartedAt = 0;
  private readonly inflight = new Map<string, number>();
  private readonly ejectedUntil = new Map<string, number>();
  private readonly answeredUntil = new Map<string, number>();

  private live(node: PoolNode, now: number): boolean {
    return node.expiresAt > now || (this.answeredUntil.get(node.id) ?? 0) > now;
  }

  /** True while the node is in the pool: heartbeats, or answers seen lately. */
  isLive(nodeId: string): boolean {
    const node = this.nodes.find((n) => n.id === nodeId);
    return node !== undefined && this.live(node, Date.now());
  }

  /** The node answered a request: it counts as live for `ms` more (like a heartbeat would). */
  markAlive(nodeId: string, ms: number): void {
    this.answeredUntil.set(nodeId, Date.now() + ms);
  }

  /** Makes sure the view is fresh enough to route with. */
  async ensureFresh(env: Env, cfg: EdgeConfig, waitUntil: (p: Promise<unknown>) => void): Promise<void> {
    const now = Date.now();
    const age = now - this.fetchedAt;
    if (this.fetchedAt === 0 || age > cfg.poolCacheMs * 10) {
      await this.refresh(env);
    } else if (age > cfg.poolCacheMs && now - this.refreshStartedAt > cfg.poolCacheMs) {
      this.refreshStartedAt = now;
      waitUntil(this.refresh(env).catch(() => undefined));
    }
  }

  async refresh(env: Env): Promise<void> {
    const nodes = await nodePool(env).snapshot();
    this.nodes = nodes;
    // A node the pool no longer knows (forgotten, or re-registered) starts over.
    for (const id of this.answeredUntil.keys()) if (!nodes.some((n) => n.id === id)) this.answeredUntil.delete(id);
    this.fetchedAt = Date.now();
  }

  /** True when the view was fetched less than `ms` ago. */
  freshWithin(ms: number): boolean {
    return Date.now() - this.fetchedAt < ms;
  }

  /** Applies a node state this isolate learned first-hand (a heartbeat or a drain it handled). */
  apply(node: PoolNode): void {
    const i = this.nodes.findIndex((n) => n.id === node.id);
    if (i >= 0) this.nodes[i] = node;
    else this.nodes = [...this.nodes, node];
  }

  /** Drops a node this isolate saw revoked or rotated (other isolates within POOL_CACHE_MS). */
  remove(id: string): void {
    this.nodes = this.nodes.filter((n) => n.id !== id);
  }

  /**
   * The nodes to try for `model`, in order; or why there are none. Nodes this isolate ejected
   * come last rather than not at all: ejection is a guess, and the last live node is always tried.
   * After them come nodes whose last heartbeat is late by less than `lateMs`: an edge that
   * suddenly gets busy hears heartbeats late before any of them can tell it how late, and a node
   * nobody sent traffic to has no answers to vouch for it either. A node that is really gone fails
   * its attempt at once (refused) or within CONNECT_TIMEOUT_MS (frozen).
   */
  route(model: string, prefixHash: number | null, random?: () => number, lateMs = 0): RouteResult {
    const now = Date.now();
    const candidates: Candidate[] = [];
    const ejectedNodes: PoolNode[] = [];
    const lateNodes: PoolNode[] = [];
    let anyLive = false;
    let modelKnown = false;
    for (const node of this.nodes) {
      const live = this.live(node, now);
      const serves = node.models.includes(model);
      anyLive ||= live;
      modelKnown ||= serves;
      if (!serves || isDraining(node)) continue;
      if (!live) {
        if (node.expiresAt + lateMs > now) lateNodes.push(node);
        continue;
      }
      const ejected = this.ejectedUntil.get(node.id);
      if (ejected !== undefined) {
        if (ejected > now) {
          ejectedNodes.push(node);
          continue;
        }
        this.ejectedUntil.delete(node.id);
      }
      const mine = this.inflight.get(node.id) ?? 0;
      candidates.push({
        id: node.id,
        node,
        busy: Math.max(node.load.running + node.load.waiting, mine),
        waiting: node.load.waiting,
        maxNumSeqs: node.capacity.max_num_seqs,
        kvUsage: node.load.kv_usage,
      });
    }
    if (candidates.length > 0 || ejectedNodes.length > 0 || lateNodes.length > 0) {
      return { ok: true, nodes: [...planRoute(candidates, prefixHash, random).map((c) => c.node), ...ejectedNodes, ...lateNodes] };
    }
    if (anyLive && !modelKnown) {
      return { ok: false, status: 404, message: `The model '${model}' does not exist.`, code: "model_not_found" };
    }
    return {
      ok: false,
      status: 503,
      message: `No healthy node is serving '${model}' right now. Please retry shortly.`,
      code: "no_healthy_node",
    };
  }

  /** Models served by live, undrained nodes, OpenAI `model` objects. */
  models(): { id: string; object: "model"; created: number; owned_by: string; max_model_len: number }[] {
    const now = Date.now();
    const byId = new Map<string, { id: string; object: "model"; created: number; owned_by: string; max_model_len: number }>();
    for (const node of this.nodes) {
      if (!this.live(node, now) || isDraining(node)) continue;
      for (const id of node.models) {
        const seen = byId.get(id);
        if (seen) seen.max_model_len = Math.max(seen.max_model_len, node.capacity.max_model_len);
        else byId.set(id, { id, object: "model", created: 0, owned_by: "seventy", max_model_len: node.capacity.max_model_len });
      }
    }
    return [...byId.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  begin(nodeId: string): void {
    this.inflight.set(nodeId, (this.inflight.get(nodeId) ?? 0) + 1);
  }

  end(nodeId: string): void {
    const n = (this.inflight.get(nodeId) ?? 1) - 1;
    if (n > 0) this.inflight.set(nodeId, n);
    else this.inflight.delete(nodeId);
  }

  /** Skips a node that refused a connection or timed out, until it has had time to recover. */
  eject(nodeId: string, ms: number): void {
    if (ms > 0) this.ejectedUntil.set(nodeId, Date.now() + ms);
  }

  /** Forgets everything (tests). */
  reset(): void {
    this.nodes = [];
    this.fetchedAt = 0;
    this.refreshStartedAt = 0;
    this.inflight.clear();
    this.ejectedUntil.clear();
    this.answeredUntil.clear();
  }
}

/** The isolate's view; module state is per isolate in Workers. */
export const poolView = new PoolView();
