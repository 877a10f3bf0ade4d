/**
 * A node whose heartbeats all reach the edge late stays in the pool. A saturated edge gets to a
 * heartbeat seconds after the node signed it, and to the next one as late; the node must not
 * leave routing in between. Here every heartbeat is held for HOLD_MS (longer than NODE_TTL_MS) on
 * its way to the edge, so the edge hears from the node only every HOLD_MS or so: on the plain TTL
 * it would be out of the pool for about a second of every beat. The edge sees from the signed
 * timestamp how long each heartbeat waited and gives the node that much more time, so it stays.
 *
 * The node serves a model nobody else serves and gets no user traffic except the probes below,
 * spaced further apart than NODE_TTL_MS: its answers (which also count as a sign of life) cannot
 * be what keeps it in the pool. Its presence is read from what routing uses (GET /v1/models lists
 * the models of live nodes), from the admin API, and from requests for its model.
 *
 * Only a heartbeat that already waited tells the edge it is slow. When the wait jumps at once from
 * nothing to more than NODE_TTL_MS less the heartbeat interval, a node nobody is sending requests to
 * is out of the pool from its TTL until its first late heartbeat arrives (about a second with these
 * settings). Routing still tries such a node, last, for another NODE_TTL_MS: the second test
 * sends a request in that gap.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { adminCall, freePort, registerNode, sleep, startEdge, startNode, stopGroup, waitForNodes, type Started } from "../../edge/scripts/stack.mjs";
import { startHeartbeatHold } from "../helpers/nodes.js";

const ADMIN = "heartbeat-lag-admin-token";
const SECRET = "heartbeat-lag-node-secret";
const MODEL = "late-node-model";
const TTL_MS = 3000;
// Longer than the TTL plus the heartbeat interval, and within the extension the edge gives (up to one more TTL).
const HOLD_MS = 4000;
const HEARTBEAT_MS = 200;
const WATCH_MS = 12_000;
// Further apart than TTL_MS: an answer keeps a node live for a TTL, so each probe finds the node in
// the pool on its heartbeats alone.
const PROBE_EVERY_MS = TTL_MS + 1000;

let stateDir: string;
let edge: Started;
let node: Started | undefined;
let hold: Awaited<ReturnType<typeof startHeartbeatHold>> | undefined;
let onsetNode: Started | undefined;
let onsetHold: Awaited<ReturnType<typeof startHeartbeatHold>> | undefined;
const ONSET_MODEL = "onset-node-model";

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), "seventy-heartbeat-lag-"));
  edge = await startEdge({
    port: await freePort(),
    adminToken: ADMIN,
    nodeSecret: SECRET,
    stateDir,
    vars: { NODE_TTL_MS: String(TTL_MS), POOL_CACHE_MS: "200", LOG_LEVEL: "error" },
  });
  /** A simulated node serving `model` alone, its heartbeats going to the edge through `via`. */
  const heldNode = async (id: string, model: string, via: { url: string }) => {
    const port = await freePort();
    return startNode({
      port,
      edgeUrl: via.url,
      credential: await registerNode(edge.url, ADMIN, { id, port }),
      engine: "simulated",
      args: ["--served-model-name", model, "--heartbeat-interval-ms", String(HEARTBEAT_MS), "--simulated-step-ms", "5"],
    });
  };
  hold = await startHeartbeatHold(edge.url, HOLD_MS);
  node = await heldNode("late", MODEL, hold);
  // The second node's heartbeats go through at once until the test holds them.
  onsetHold = await startHeartbeatHold(edge.url, 0);
  onsetNode = await heldNode("onset", ONSET_MODEL, onsetHold);
  // The first node's first heartbeat arrives HOLD_MS after it starts.
  await waitForNodes(edge.url, ADMIN, ["late", "onset"]);
}, 120_000);

afterAll(async () => {
  if (node) await stopGroup(node.child, "SIGKILL");
  if (onsetNode) await stopGroup(onsetNode.child, "SIGKILL");
  await hold?.close();
  await onsetHold?.close();
  await edge?.stop();
  if (stateDir) await rm(stateDir, { recursive: true, force: true });
}, 30_000);

it("keeps a node in routing when every heartbeat reaches the edge later than NODE_TTL_MS after the last", async () => {
  const { key } = await adminCall(edge.url, ADMIN, "POST", "/admin/keys", { name: "heartbeat-lag", limits: { rpm: 1_000_000, tpm: 1_000_000_000 } });
  const auth = { authorization: `Bearer ${key}` };
  const until = Date.now() + WATCH_MS;
  const heldBefore = hold!.held();

  const probes: string[] = [];
  const probing = (async () => {
    while (Date.now() < until) {
      const res = await fetch(`${edge.url}/v1/chat/completions`, {
        method: "POST",
        headers: { ...auth, "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL, messages: [{ role: "user", content: "still there?" }], max_tokens: 1 }),
      });
      const text = await res.text();
      probes.push(res.status === 200 ? "200" : `${res.status} ${/"code":"([a-z_]+)"/.exec(text)?.[1]}`);
      await sleep(PROBE_EVERY_MS);
    }
  })();

  // What routing and the admin API say, every 100 ms.
  const polls: { routed: boolean; status: string; sinceHeartbeatMs: number }[] = [];
  while (Date.now() < until) {
    const models = (await (await fetch(`${edge.url}/v1/models`, { headers: auth })).json()) as { data: { id: string }[] };
    const { data } = await adminCall(edge.url, ADMIN, "GET", "/admin/nodes");
    const late = data.find((n: { id: string }) => n.id === "late");
    polls.push({ routed: models.data.some((m) => m.id === MODEL), status: late.status, sinceHeartbeatMs: late.last_heartbeat_ms_ago });
    await sleep(100);
  }
  await probing;

  const out = polls.filter((p) => !p.routed || p.status !== "healthy");
  const longestSilence = Math.max(...polls.map((p) => p.sinceHeartbeatMs));
  console.log(
    `heartbeat lag: ${hold!.held() - heldBefore} heartbeats held ${HOLD_MS} ms each, longest silence ${longestSilence} ms (TTL ${TTL_MS} ms); ` +
      `${polls.length} polls, ${out.length} with the node out of the pool ${JSON.stringify(out.slice(0, 5))}; probes ${JSON.stringify(probes)}`,
  );
  // The premise: the edge went longer than a TTL without hearing from the node, several times.
  expect(longestSilence).toBeGreaterThan(TTL_MS);
  expect(hold!.held() - heldBefore).toBeGreaterThanOrEqual(2);
  // Yet it never left the pool, and requests for its model were served.
  expect(polls.length).toBeGreaterThan(20);
  expect(out).toEqual([]);
  expect(probes.length).toBeGreaterThanOrEqual(2);
  expect(probes.every((p) => p === "200")).toBe(true);
}, 60_000);

it("routes to a node whose heartbeats suddenly arrive late, in the gap before the first late one", async () => {
  const { key } = await adminCall(edge.url, ADMIN, "POST", "/admin/keys", { name: "heartbeat-onset", limits: { rpm: 1_000_000, tpm: 1_000_000_000 } });
  const ask = async () => {
    const res = await fetch(`${edge.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: ONSET_MODEL, messages: [{ role: "user", content: "still there?" }], max_tokens: 1 }),
    });
    const text = await res.text();
    return res.status === 200 ? "200" : `${res.status} ${/"code":"([a-z_]+)"/.exec(text)?.[1]}`;
  };
  // Served while its heartbeats arrive on time. That answer vouches for the node for a TTL, so
  // wait that out before the heartbeats start to arrive late.
  expect(await ask()).toBe("200");
  await sleep(TTL_MS);
  onsetHold!.setHold(HOLD_MS);
  // The gap: the pool has the node as expired (no heartbeat for a TTL) until the first late
  // heartbeat arrives, about HOLD_MS - TTL_MS later.
  const deadline = Date.now() + HOLD_MS + 2000;
  let status = "healthy";
  while (status === "healthy" && Date.now() < deadline) {
    await sleep(50);
    const { data } = await adminCall(edge.url, ADMIN, "GET", "/admin/nodes");
    status = data.find((n: { id: string }) => n.id === "onset").status;
  }
  expect(status).not.toBe("healthy");
  // Asked in the gap, routing tries the late node rather than answering 503 no_healthy_node.
  expect(await ask()).toBe("200");
}, 60_000);
