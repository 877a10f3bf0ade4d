// Serving overhead of the gpu-node host path: a zero-cost simulated engine (tokens instantly) behind
// the real scheduler, detokenizer, SSE writer and HTTP server, with 1, 64 and 256 concurrent
// streaming clients on loopback. The server runs in its own process (one core); clients use
// node:http directly so the client side costs as little as possible.
import { spawn, spawnSync } from "node:child_process";
import os from "node:os";
import { readFileSync } from "node:fs";
import http from "node:http";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../gpu-node/dist/cli.js", import.meta.url));
const MAX_TOKENS = Number(process.env.BENCH_MAX_TOKENS ?? 256);
const LEVELS = (process.env.BENCH_CONCURRENCY ?? "1,64,256").split(",").map(Number);

// With taskset and 2+ cores, the server gets core 0 to itself and this client process the others,
// so the table shows what one core of host path can do, not how the two share a core.
const PIN = os.cpus().length >= 2 && spawnSync("taskset", ["-V"]).status === 0;
if (PIN) spawnSync("taskset", ["-pc", `1-${os.cpus().length - 1}`, String(process.pid)]);

function startServer() {
  const args = [CLI, "serve", "--engine", "simulated", "--port", "0", "--max-num-seqs", "512"];
  const child = PIN
    ? spawn("taskset", ["-c", "0", process.execPath, ...args], { stdio: ["ignore", "pipe", "inherit"] })
    : spawn(process.execPath, args, { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /listening on http:\/\/([\d.]+):(\d+)/.exec(out);
      if (m) resolve({ child, pid: child.pid, host: m[1], port: Number(m[2]) });
    });
    child.once("exit", (c) => reject(new Error(`server exited ${c}`)));
  });
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 1024 });

function stream({ host, port }, gaps) {
  const body = JSON.stringify({
    model: "tiny-llama-3.1",
    messages: [{ role: "user", content: "Benchmark prompt." }],
    max_tokens: MAX_TOKENS,
    ignore_eos: true,
    stream: true,
  });
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host, port, path: "/v1/chat/completions", method: "POST", agent, headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) } },
      (res) => {
        let chunks = 0;
        let last = 0;
        res.on("data", (buf) => {
          const now = performance.now();
          // Count events in this network piece; each content chunk carries one token.
          let n = 0;
          for (let i = buf.indexOf("data: "); i !== -1; i = buf.indexOf("data: ", i + 6)) n++;
          if (last) gaps.push((now - last) / Math.max(1, n));
          last = now;
          chunks += n;
        });
        res.on("end", () => resolve(chunks));
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

/** CPU seconds (user + system) a process has used so far, from /proc (Linux); null elsewhere. */
function cpuSeconds(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime in clock ticks (USER_HZ = 100)
  } catch {
    return null;
  }
}

function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;
}

const server = await startServer();
try {
  await stream(server, []); // warm-up
  const rows = [];
  // Each level runs ROUNDS times; the table shows the round with the median server cost
  // (this machine is noisy: single rounds vary by ±20%).
  const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
  for (const c of LEVELS) {
    const rounds = [];
    for (let k = 0; k < ROUNDS; k++) {
      const gaps = [];
      const cpu0 = cpuSeconds(server.pid);
      const t0 = performance.now();
      const counts = await Promise.all(Array.from({ length: c }, () => stream(server, gaps)));
      const secs = (performance.now() - t0) / 1000;
      const cpu1 = cpuSeconds(server.pid);
      // Content chunks = events minus the role chunk, the finish chunk and [DONE].
      const tokens = counts.reduce((a, n) => a + n - 3, 0);
      gaps.sort((a, b) => a - b);
      const serverCpu = cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null;
      rounds.push({ streams: c, tokens, tokPerSec: tokens / secs, p50: pct(gaps, 50), p99: pct(gaps, 99), serverCpu, secs });
    }
    rounds.sort((a, b) => (a.serverCpu ?? -a.tokPerSec) / a.tokens - (b.serverCpu ?? -b.tokPerSec) / b.tokens);
    rows.push(rounds[Math.floor(rounds.length / 2)]);
  }
  console.log(`\ngpu-node host path (simulated zero-cost engine, loopback, server in one process${PIN ? " pinned to core 0, clients on the other cores" : ""})`);
  console.log("| concurrent streams | tokens | streamed tokens/s | gap p50 (ms) | gap p99 (ms) | server busy | server CPU µs/token | one-core capacity tokens/s | capacity vs 50k target |");
  console.log("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
  const fmt = (n) => Math.round(n).toLocaleString("en-US");
  for (const r of rows) {
    const us = r.serverCpu === null ? null : (r.serverCpu * 1e6) / r.tokens;
    const cap = us === null ? null : 1e6 / us;
    console.log(
      `| ${r.streams} | ${r.tokens} | ${fmt(r.tokPerSec)} | ${r.p50.toFixed(3)} | ${r.p99.toFixed(3)} | ` +
        `${r.serverCpu === null ? "n/a" : `${Math.round((100 * r.serverCpu) / r.secs)}%`} | ${us === null ? "n/a" : us.toFixed(1)} | ` +
        `${cap === null ? "n/a" : fmt(cap)} | ${cap === null ? "n/a" : `${(cap / 50000).toFixed(2)}×`} |`,
    );
  }
  console.log("Streamed tokens/s is bounded by the client processes sharing this machine when the server is not fully busy;");
  console.log("server CPU per token (from /proc) is the host path's own cost, and its inverse what one core can carry.");
} finally {
  server.child.kill("SIGINT");
  agent.destroy();
}
