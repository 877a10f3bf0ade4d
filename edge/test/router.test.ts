import { describe, expect, it } from "vitest";
import type { PoolNode } from "../src/pool/node-pool";
import { affinityNode, hashString, isOverloaded, planRoute, type RouteCandidate } from "../src/pool/router";
import { PoolView } from "../src/pool/view";

function node(id: string, busy = 0, over: Partial<RouteCandidate> = {}): RouteCandidate {
  return { id, busy, waiting: 0, maxNumSeqs: 8, kvUsage: 0, ...over };
}

/** A deterministic random source (mulberry32). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

describe("planRoute", () => {
  const nodes = [node("a"), node("b"), node("c"), node("d"), node("e")];

  it("sends one prefix to one node, and different prefixes to different nodes", () => {
    const homes = new Map<string, number>();
    for (let p = 0; p < 200; p++) {
      const h = hashString(`system prompt ${p}`);
      const first = planRoute(nodes, h, lcg(p))[0]!.id;
      for (let r = 0; r < 5; r++) expect(planRoute(nodes, h, lcg(p * 31 + r))[0]!.id).toBe(first);
      homes.set(first, (homes.get(first) ?? 0) + 1);
    }
    expect(homes.size).toBe(5);
    // Rendezvous hashing spreads prefixes evenly: every node gets 40 ± 20 of 200.
    for (const n of homes.values()) expect(n).toBeGreaterThan(20);
  });

  it("keeps prefixes of unaffected nodes where they were when a node leaves", () => {
    const moved = [0, 0];
    for (let p = 0; p < 200; p++) {
      const h = hashString(`conversation ${p}`);
      const before = affinityNode(nodes, h)!.id;
      const after = affinityNode(nodes.filter((n) => n.id !== "c"), h)!.id;
      if (before !== "c") moved[before === after ? 0 : 1]!++;
    }
    expect(moved[1]).toBe(0);
    expect(moved[0]).toBeGreaterThan(100);
  });

  it("leaves an overloaded affinity node for the less loaded of two random choices", () => {
    const h = hashString("hot prefix");
    const home = affinityNode(nodes, h)!.id;
    const loaded = nodes.map((n) => (n.id === home ? node(n.id, 8) : node(n.id, n.id.charCodeAt(0) % 3)));
    for (let s = 0; s < 50; s++) {
      const plan = planRoute(loaded, h, lcg(s));
      expect(plan[0]!.id).not.toBe(home);
      expect(plan.map((n) => n.id).sort()).toEqual(["a", "b", "c", "d", "e"]);
    }
  });

  it("without affinity picks the lighter of two random nodes: never the heaviest", () => {
    const loaded = [node("a", 0), node("b", 2), node("c", 4), node("d", 6), node("e", 7)];
    const counts = new Map<string, number>();
    const random = lcg(7);
    for (let s = 0; s < 2000; s++) {
      const id = planRoute(loaded, null, random)[0]!.id;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    expect(counts.get("e") ?? 0).toBe(0);
    // P(pick the lightest of 5) with two choices = 1 - C(4,2)/C(5,2) = 0.4
    expect((counts.get("a") ?? 0) / 2000).toBeGreaterThan(0.33);
    expect((counts.get("a") ?? 0) / 2000).toBeLessThan(0.47);
  });

  it("orders the failover targets from least to most loaded", () => {
    const loaded = [node("a", 5), node("b", 1), node("c", 3)];
    const plan = planRoute(loaded, null, () => 0);
    expect(plan.slice(1).map((n) => n.busy)).toEqual([...plan.slice(1).map((n) => n.busy)].sort((x, y) => x - y));
    expect(plan).toHaveLength(3);
  });

  it("counts queueing, full slots and a full KV cache as overloaded", () => {
    expect(isOverloaded(node("a", 7))).toBe(false);
    expect(isOverloaded(node("a", 8))).toBe(true);
    expect(isOverloaded(node("a", 1, { waiting: 1 }))).toBe(true);
    expect(isOverloaded(node("a", 1, { kvUsage: 0.97 }))).toBe(true);
  });

  it("returns nothing for no candidates and the only node for one", () => {
    expect(planRoute([], 1)).toEqual([]);
    expect(planRoute([node("x", 8)], hashString("p"))[0]!.id).toBe("x");
  });
});

describe("PoolView.route", () => {
  function poolNode(id: string, expiresInMs: number, over: Partial<PoolNode> = {}): PoolNode {
    const now = Date.now();
    return {
      id,
      url: `https://${id}.node.test`,
      credentialId: "c",
      models: ["m"],
      engine: "test",
      capacity: { max_num_seqs: 8, kv_blocks_total: 100, max_model_len: 8192 },
      load: { running: 0, waiting: 0, kv_usage: 0 },
      reportedDraining: false,
      adminDrained: false,
      lastSeen: now,
      expiresAt: now + expiresInMs,
      ...over,
    };
  }
  function viewOf(...nodes: PoolNode[]): PoolView {
    const view = new PoolView();
    for (const n of nodes) view.apply(n);
    return view;
  }
  const ids = (r: ReturnType<PoolView["route"]>) => (r.ok ? r.nodes.map((n) => n.id) : r.code);

  it("tries live nodes first, then ejected ones, then ones whose heartbeats are late by less than lateMs", () => {
    const view = viewOf(poolNode("late", -2000), poolNode("ejected", 5000), poolNode("live", 5000), poolNode("gone", -7000));
    view.eject("ejected", 5000);
    expect(ids(view.route("m", null, undefined, 6000))).toEqual(["live", "ejected", "late"]);
    // Without the allowance a late node is not routed to at all.
    expect(ids(view.route("m", null, undefined, 0))).toEqual(["live", "ejected"]);
  });

  it("routes to a late node when it is the only one, never to a drained or long-silent one", () => {
    expect(ids(viewOf(poolNode("late", -1000)).route("m", null, undefined, 6000))).toEqual(["late"]);
    expect(ids(viewOf(poolNode("late", -1000, { adminDrained: true })).route("m", null, undefined, 6000))).toBe("no_healthy_node");
    expect(ids(viewOf(poolNode("gone", -6001)).route("m", null, undefined, 6000))).toBe("no_healthy_node");
  });
});
