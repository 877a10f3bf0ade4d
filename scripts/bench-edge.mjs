// `node scripts/bench-edge.mjs`: what the edge adds to a request, side by side with calling the
// upstream directly in the same run.
//
// The edge runs as production runs it: the bundle from `wrangler deploy --dry-run`, under bare
// `workerd serve` (wrangler dev adds 2-5 ms of its own proxying), with auth, rate limits, routing,
// signing and usage metering all on. The upstream is a stub gpu-node in its own process that
// answers instantly (a 50-chunk OpenAI stream, or a JSON completion), so every millisecond above
// the direct path is the edge's.
//
// Throughput rounds measure the edge, a do-nothing proxy worker, one that asks a Durable Object per
// request, and one that does the edge's I/O without its logic, in turn (so all see the same
// machine), with workerd's CPU time per request beside req/s.
//
// Options: --requests N (sequential samples per path, default 2000), --seconds S (per throughput
// run, default 5), --concurrency C (default 32), --log-level info|error (default error),
// --profile FILE (only: sample the edge's isolate with V8's profiler during one throughput run,
// write the .cpuprofile to FILE and print the functions that took the most time).
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import { tmpdir, cpus } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { signRequest } from "@seventy/sdk/signing";
import { Pool, WebSocket } from "undici";
import {
  ROOT,
  adminCall,
  buildBundle,
  freePort,
  readWranglerToml,
  spawnGroup,
  stopGroup,
  waitFor,
  waitForNodes,
  workerdConfig,
} from "../edge/scripts/stack.mjs";

const MODEL = "bench-model";
const CHUNKS = 50;

// ---------------------------------------------------------------------------------------------
// The stub upstream (run as a child: `bench-edge.mjs --stub PORT EDGE_URL CREDENTIAL`).

function chunk(i) {
  return `data: ${JSON.stringify({
    id: "chatcmpl-bench",
    object: "chat.completion.chunk",
    created: 1,
    model: MODEL,
    choices: [{ index: 0, delta: i === 0 ? { role: "assistant", content: "" } : { content: ` tok${i}` }, logprobs: null, finish_reason: i === CHUNKS - 1 ? "length" : null }],
  })}\n\n`;
}

async function runStub(port, edgeUrl, credential) {
  const [, nodeId, , nodeKey] = credential.split(".");
  const events = Array.from({ length: CHUNKS }, (_, i) => chunk(i));
  const usage = { prompt_tokens: 40, completion_tokens: CHUNKS, total_tokens: 40 + CHUNKS };
  const usageEvent = `data: ${JSON.stringify({ id: "chatcmpl-bench", object: "chat.completion.chunk", created: 1, model: MODEL, choices: [], usage })}\n\n`;
  const completion = JSON.stringify({
    id: "chatcmpl-bench",
    object: "chat.completion",
    created: 1,
    model: MODEL,
    choices: [{ index: 0, message: { role: "assistant", content: "tok ".repeat(CHUNKS) }, logprobs: null, finish_reason: "length" }],
    usage,
  });
  const server = createServer((req, res) => {
    const parts = [];
    req.on("data", (d) => parts.push(d));
    req.on("end", () => {
      const body = Buffer.concat(parts).toString();
      if (req.url === "/health") return res.end("{}");
      if (body.includes('"stream":true')) {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
        for (const e of events) res.write(e);
        if (body.includes('"include_usage":true')) res.write(usageEvent);
        res.end("data: [DONE]\n\n");
      } else {
        // Like a gpu-node (@hono/node-server), a JSON answer declares its length.
        res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(completion) });
        res.end(completion);
      }
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(port, "127.0.0.1");
  const beat = async () => {
    const body = JSON.stringify({
      node_id: nodeId,
      url: `http://127.0.0.1:${port}`,
      models: [MODEL],
      engine: "stub",
      capacity: { max_num_seqs: 1024, kv_blocks_total: 1, max_model_len: 8192 },
      load: { running: 0, waiting: 0, kv_usage: 0 },
    });
    const headers = await signRequest({ method: "POST", path: "/internal/nodes/heartbeat", body, secret: nodeKey, signed: { "x-seventy-node": nodeId } });
    await fetch(`${edgeUrl}/internal/nodes/heartbeat`, { method: "POST", body, headers: { ...headers, "content-type": "application/json" } }).catch(() => undefined);
  };
  setInterval(beat, 1000);
  await beat();
  console.log("stub ready");
}

// ---------------------------------------------------------------------------------------------
// The edge under bare workerd.

/**
 * Reference workers that set the floor on this machine: the least any proxy worker costs
 * (MODE "none"), and the least one that asks a Durable Object before forwarding costs ("one": the
 * edge admits every request through the key's object, which is what makes its limits exact).
 *
 * "edge-io" does the edge's I/O with none of its logic: the admission call with the edge's
 * arguments and an answer of its shape (one finished request riding along), the node protocol's
 * headers on the upstream request (placeholder values, nothing computed), an abort signal, and the
 * answer passed through with the edge's response headers. What the edge costs above it is its logic
 * (authentication, validation, routing, signing, metering, timers).
 */
const FLOOR_PROXY = `
import { DurableObject } from "cloudflare:workers";
export class Counter extends DurableObject {
  n = 0;
  admit() { return ++this.n; }
  admitLikeEdge(model, tokens, ttlMs, releases) {
    this.n += 1 - releases.length;
    return { ok: true, keyId: "key_0123456789abcdef01234567", cacheSalt: "0123456789abcdef0123456789abcdef", leaseId: "0a1b2c3d." + this.n, models: null,
      rate: { limitRequests: 100000000, remainingRequests: 99999999, resetRequestsMs: 1, limitTokens: 1000000000000, remainingTokens: 999999998800, resetTokensMs: 72 } };
  }
}
const RELEASES = [{ leaseId: "0a1b2c3d.1", usage: { promptTokens: 40, completionTokens: 50, cachedTokens: 0, error: false } }];
export default {
  async fetch(req, env) {
    const body = await req.arrayBuffer();
    if (env.MODE === "edge-io") {
      const { model } = JSON.parse(new TextDecoder().decode(body));
      const a = await env.COUNTER.get(env.COUNTER.idFromName("k")).admitLikeEdge(model, 1200, 120000, RELEASES);
      const abort = new AbortController();
      const id = "req_0123456789abcdef0123456789abcdef";
      const res = await fetch(env.UPSTREAM + "/v1/chat/completions", { method: "POST", body, signal: abort.signal, headers: {
        "content-type": "application/json", accept: "application/json", "x-request-id": id,
        "x-seventy-key-id": a.keyId, "x-seventy-cache-salt": a.cacheSalt, "x-seventy-node": "bench-stub", "x-seventy-budget": "1200",
        "x-seventy-signature": "v2=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "x-seventy-timestamp": "1790000000",
        "x-seventy-nonce": "0123456789abcdef0123456789abcdef" } });
      return new Response(res.body, { status: res.status, headers: {
        "content-type": "application/json", "x-request-id": id, "x-seventy-node": "bench-stub",
        "x-ratelimit-limit-requests": "100000000", "x-ratelimit-remaining-requests": "99999999", "x-ratelimit-reset-requests": "1ms",
        "x-ratelimit-limit-tokens": "1000000000000", "x-ratelimit-remaining-tokens": "999999998800", "x-ratelimit-reset-tokens": "72ms" } });
    }
    if (env.MODE === "one") await env.COUNTER.get(env.COUNTER.idFromName("k")).admit();
    const res = await fetch(env.UPSTREAM + "/v1/chat/completions", { method: "POST", body, headers: { "content-type": "application/json" } });
    return new Response(await res.arrayBuffer(), { headers: { "content-type": "application/json" } });
  },
};
`;

async function startFloor(dir, name, upstream, mode, toml) {
  await writeFile(join(dir, `${name}.js`), FLOOR_PROXY);
  const port = await freePort();
  const config = await workerdConfig({
    dir,
    name,
    port,
    bundle: `${name}.js`,
    vars: { UPSTREAM: upstream, MODE: mode },
    compatibilityDate: toml.compatibilityDate,
    compatibilityFlags: [],
    objects: { Counter: "COUNTER" },
  });
  const child = spawnGroup(join(ROOT, "node_modules", ".bin", "workerd"), ["serve", config]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(url, { method: "POST", body: "{}" })).ok, { timeoutMs: 20_000, what: `workerd (${name})` });
  return { child, url };
}

// ---------------------------------------------------------------------------------------------
// Load generation.

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  return { p50: percentile(s, 50), p99: percentile(s, 99), n: s.length };
}

function makeTarget(name, origin, path, headers) {
  return { name, pool: new Pool(origin, { connections: 64, pipelining: 1, keepAliveTimeout: 60_000 }), path, headers };
}

const BODY = JSON.stringify({
  model: MODEL,
  messages: [
    { role: "system", content: "You are a concise assistant for a TypeScript team." },
    { role: "user", content: "Summarise the difference between a token bucket and a sliding window in two sentences." },
  ],
  max_tokens: 64,
});
const STREAM_BODY = BODY.replace(/}$/, ',"stream":true}');

/** One non-stream request; ms until the whole body arrived. */
async function once(t) {
  const start = performance.now();
  const res = await t.pool.request({ path: t.path, method: "POST", headers: t.headers, body: BODY });
  await res.body.text();
  if (res.statusCode !== 200) throw new Error(`${t.name}: status ${res.statusCode}`);
  return performance.now() - start;
}

/** One stream request; ms until the first body bytes (and checks the stream completed). */
async function onceStream(t) {
  const start = performance.now();
  const res = await t.pool.request({ path: t.path, method: "POST", headers: t.headers, body: STREAM_BODY });
  let ttfb = 0;
  let text = "";
  for await (const piece of res.body) {
    if (ttfb === 0) ttfb = performance.now() - start;
    text += piece.toString();
  }
  if (res.statusCode !== 200 || !text.endsWith("data: [DONE]\n\n")) throw new Error(`${t.name}: bad stream (${res.statusCode})`);
  return ttfb;
}

/** Alternates the targets request by request so both see the same machine state. */
async function sequential(targets, n, fn) {
  const samples = targets.map(() => []);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < targets.length; j++) samples[j].push(await fn(targets[j]));
  }
  return samples.map(stats);
}

/** CPU seconds a process has used (Linux /proc; null elsewhere). */
async function cpuSeconds(pid) {
  try {
    const fields = (await readFile(`/proc/${pid}/stat`, "utf8")).split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return null;
  }
}

/** Completed requests per second with `concurrency` clients; a dropped connection is retried, a second in a row fails the run. */
async function throughput(t, concurrency, seconds) {
  let count = 0;
  const deadline = performance.now() + seconds * 1000;
  const worker = async () => {
    while (performance.now() < deadline) {
      await once(t).catch(() => once(t));
      count++;
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  return count / ((performance.now() - start) / 1000);
}

// ---------------------------------------------------------------------------------------------
// Profiling through workerd's inspector (devtools protocol over a WebSocket).

async function inspectorSession(inspectorUrl) {
  const targets = await (await fetch(`${inspectorUrl}/json/list`)).json();
  const ws = new WebSocket(targets[0].webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let seq = 0;
  const waiting = new Map();
  ws.onmessage = (e) => {
    const msg = JSON.parse(e.data);
    if (msg.id !== undefined) waiting.get(msg.id)?.(msg);
  };
  const call = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = ++seq;
      waiting.set(id, (msg) => (msg.error ? reject(new Error(msg.error.message)) : resolve(msg.result)));
      ws.send(JSON.stringify({ id, method, params }));
    });
  return { call, close: () => ws.close() };
}

/** Self time by function (and by file:line) from a .cpuprofile, most first. */
function summarizeProfile(profile, top = 40) {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map();
  const dt = profile.timeDeltas;
  let total = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    const n = byId.get(profile.samples[i]);
    const f = n.callFrame;
    const name = `${f.functionName || "(anonymous)"} ${f.url ? `${f.url.split("/").pop()}:${f.lineNumber + 1}` : ""}`;
    self.set(name, (self.get(name) ?? 0) + (dt[i] ?? 0));
    total += dt[i] ?? 0;
  }
  const rows = [...self].sort((a, b) => b[1] - a[1]).slice(0, top);
  console.log(`\nself time, ${(total / 1000).toFixed(0)} ms sampled:`);
  for (const [name, us] of rows) console.log(`${((100 * us) / total).toFixed(1).padStart(5)} %  ${name}`);
}

async function main() {
  const { values } = parseArgs({
    options: {
      stub: { type: "string" },
      requests: { type: "string", default: "2000" },
      seconds: { type: "string", default: "5" },
      concurrency: { type: "string", default: "32" },
      "log-level": { type: "string", default: "error" },
      "throughput-only": { type: "boolean", default: false },
      profile: { type: "string" },
    },
    allowPositionals: true,
    strict: true,
  });
  const n = Number(values.requests);
  const seconds = Number(values.seconds);
  const concurrency = Number(values.concurrency);

  const dir = await mkdtemp(join(tmpdir(), "seventy-bench-edge-"));
  const children = [];
  const cleanup = async () => {
    for (const c of children.reverse()) await stopGroup(c, "SIGTERM", 2000);
    await rm(dir, { recursive: true, force: true });
  };
  process.on("SIGINT", () => void cleanup().then(() => process.exit(130)));
  try {
    const adminToken = `bench-admin-${crypto.randomUUID()}`;
    const nodeSecret = `bench-node-${crypto.randomUUID()}`;
    const bundleSize = await buildBundle(join(dir, "dist"));
    const toml = await readWranglerToml();
    const edgePort = await freePort();
    const config = await workerdConfig({
      dir,
      port: edgePort,
      bundle: "dist/index.js",
      vars: { ...toml.vars, LOG_LEVEL: values["log-level"], ADMIN_TOKEN: adminToken, NODE_SECRET: nodeSecret, ALLOW_HTTP_LOOPBACK_NODES: "true" },
      compatibilityDate: toml.compatibilityDate,
      compatibilityFlags: toml.compatibilityFlags,
    });
    const inspectorPort = values.profile ? await freePort() : null;
    const workerd = spawnGroup(join(ROOT, "node_modules", ".bin", "workerd"), [
      "serve",
      config,
      ...(inspectorPort ? [`--inspector-addr=127.0.0.1:${inspectorPort}`] : []),
    ]);
    children.push(workerd);
    const edgeUrl = `http://127.0.0.1:${edgePort}`;
    await waitFor(
      async () => {
        if (workerd.exitCode !== null) throw new Error(`workerd exited:\n${workerd.output()}`);
        return (await fetch(`${edgeUrl}/health`)).ok;
      },
      { timeoutMs: 20_000, what: "workerd to serve the edge" },
    ).catch((err) => {
      throw new Error(`${err.message}\n${workerd.output()}`);
    });

    const stubPort = await freePort();
    const { credential } = await adminCall(edgeUrl, adminToken, "POST", "/admin/nodes", { id: "bench-stub", url: `http://127.0.0.1:${stubPort}` });
    const stub = spawnGroup(process.execPath, [new URL(import.meta.url).pathname, "--stub", String(stubPort), edgeUrl, credential]);
    children.push(stub);
    await waitFor(() => stub.output().includes("stub ready"), { timeoutMs: 10_000, what: "the stub upstream" });
    await waitForNodes(edgeUrl, adminToken, ["bench-stub"]);
    const { key } = await adminCall(edgeUrl, adminToken, "POST", "/admin/keys", {
      name: "bench",
      limits: { rpm: 100_000_000, tpm: 1_000_000_000_000, concurrency: 10_000 },
    });

    const direct = makeTarget("direct", `http://127.0.0.1:${stubPort}`, "/v1/chat/completions", { "content-type": "application/json" });
    const viaEdge = makeTarget("edge", edgeUrl, "/v1/chat/completions", { "content-type": "application/json", authorization: `Bearer ${key}` });
    const targets = [direct, viaEdge];

    if (values.profile) {
      await throughput(viaEdge, concurrency, 2);
      const session = await inspectorSession(`http://127.0.0.1:${inspectorPort}`);
      await session.call("Profiler.enable");
      await session.call("Profiler.setSamplingInterval", { interval: 250 });
      await session.call("Profiler.start");
      const rate = await throughput(viaEdge, concurrency, seconds);
      const { profile } = await session.call("Profiler.stop");
      session.close();
      await writeFile(values.profile, JSON.stringify(profile));
      console.log(`edge req/s at ${concurrency} concurrent while profiled: ${rate.toFixed(0)}; profile in ${values.profile}`);
      summarizeProfile(profile);
      return;
    }

    // The reference workers run beside the edge, and every throughput round measures each of them
    // in turn, so the edge and its floors see the same machine (others' jobs come and go).
    const floors = [];
    for (const [name, mode] of [["bare-proxy", "none"], ["bare-proxy-plus-object", "one"], ["edge-io", "edge-io"]]) {
      const floor = await startFloor(dir, name, `http://127.0.0.1:${stubPort}`, mode, toml);
      children.push(floor.child);
      floors.push({ ...makeTarget(name, floor.url, "/v1/chat/completions", { "content-type": "application/json" }), child: floor.child });
    }
    const [bare, oneObject, edgeIo] = floors;
    const rps = { direct: [], edge: [], "bare-proxy": [], "bare-proxy-plus-object": [], "edge-io": [] };
    // workerd's CPU time per request: unlike req/s, hardly moved by whatever else the machine runs.
    const cpu = { edge: [], "bare-proxy": [], "bare-proxy-plus-object": [], "edge-io": [] };
    const measure = async (t, child) => {
      const before = child ? await cpuSeconds(child.pid) : null;
      const rate = await throughput(t, concurrency, seconds);
      const after = child ? await cpuSeconds(child.pid) : null;
      rps[t.name].push(rate);
      if (before !== null && after !== null) cpu[t.name].push(((after - before) * 1e6) / (rate * seconds));
    };
    const rounds = async (count, withDirect) => {
      for (let round = 0; round < count; round++) {
        if (withDirect) await measure(direct);
        await measure(viaEdge, workerd);
        await measure(bare, bare.child);
        await measure(oneObject, oneObject.child);
        await measure(edgeIo, edgeIo.child);
      }
    };
    const best = (a) => Math.max(...a);
    const median = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    const summary = () => {
      const ratio = (a, b) => `${((100 * best(rps[a])) / best(rps[b])).toFixed(0)} %`;
      console.log(
        `\nreq/s runs at ${concurrency} concurrent: ${Object.entries(rps)
          .filter(([, v]) => v.length > 0)
          .map(([k, v]) => `${k} ${v.map((x) => x.toFixed(0)).join(", ")}`)
          .join("; ")}`,
      );
      console.log(`edge / one-object floor: ${ratio("edge", "bare-proxy-plus-object")} (target ≥ 75 %); edge / do-nothing worker: ${ratio("edge", "bare-proxy")} (best runs)`);
      console.log(`edge / edge-io floor: ${ratio("edge", "edge-io")}; edge-io floor / one-object floor: ${ratio("edge-io", "bare-proxy-plus-object")} (best runs)`);
      if (cpu.edge.length > 0) {
        console.log(
          `workerd CPU per request (median): edge ${median(cpu.edge).toFixed(0)} µs, do-nothing ${median(cpu["bare-proxy"]).toFixed(0)} µs, one-object ${median(cpu["bare-proxy-plus-object"]).toFixed(0)} µs, edge-io ${median(cpu["edge-io"]).toFixed(0)} µs`,
        );
      }
    };

    // Warm up: JIT, connections, the key's and the pool's objects.
    for (const t of [viaEdge, bare, oneObject, edgeIo]) await throughput(t, concurrency, 1);

    if (values["throughput-only"]) {
      await rounds(3, false);
      summary();
      await Promise.all([...targets, ...floors].map((t) => t.pool.close()));
      return;
    }

    await sequential(targets, 300, once);
    await sequential(targets, 300, onceStream);
    const [dNs, eNs] = await sequential(targets, n, once);
    const [dSt, eSt] = await sequential(targets, n, onceStream);
    await rounds(2, true);

    const f = (x) => x.toFixed(2).padStart(7);
    const fd = (x) => `${x >= 0 ? "+" : ""}${x.toFixed(2)}`.padStart(7);
    console.log(`\nedge overhead — bundle ${(bundleSize / 1024).toFixed(0)} KiB under bare workerd, LOG_LEVEL=${values["log-level"]}, ${cpus().length} cores, ${n} sequential samples per path`);
    console.log(`stub upstream answers instantly: JSON completion, or a ${CHUNKS}-chunk SSE stream; auth + rate limits + metering on\n`);
    console.log("| measure                         |  direct |    edge |   added | target   |");
    console.log("|---------------------------------|--------:|--------:|--------:|----------|");
    console.log(`| non-stream latency p50 (ms)     | ${f(dNs.p50)} | ${f(eNs.p50)} | ${fd(eNs.p50 - dNs.p50)} | ≤ +1     |`);
    console.log(`| non-stream latency p99 (ms)     | ${f(dNs.p99)} | ${f(eNs.p99)} | ${fd(eNs.p99 - dNs.p99)} |          |`);
    console.log(`| stream first byte p50 (ms)      | ${f(dSt.p50)} | ${f(eSt.p50)} | ${fd(eSt.p50 - dSt.p50)} | ≤ +2     |`);
    console.log(`| stream first byte p99 (ms)      | ${f(dSt.p99)} | ${f(eSt.p99)} | ${fd(eSt.p99 - dSt.p99)} | ≤ +10    |`);
    console.log(`| req/s at ${String(concurrency).padEnd(2)} concurrent (best of 2) | ${best(rps.direct).toFixed(0).padStart(7)} | ${best(rps.edge).toFixed(0).padStart(7)} |         | ≥ 4400   |`);
    summary();
    console.log("(floors: the same workerd, client and upstream; a do-nothing proxy worker, the same asking one Durable Object per request, and one doing the edge's I/O without its logic)");
    await Promise.all([...targets, ...floors].map((t) => t.pool.close()));
  } finally {
    await cleanup();
  }
}

const args = process.argv.slice(2);
if (args[0] === "--stub") {
  await runStub(Number(args[1]), args[2], args[3]);
} else {
  await main();
  process.exit(0);
}
