// Serving overhead of the gpu-node host path: a zero-cost simulated engine (tokens instantly) behind
// the real scheduler, detokenizer, SSE writer and HTTP server, with 1, 64 and 256 concurrent
// streaming clients on loopback. The server runs in its own process (one core); clients use
// node:http directly so the client side costs as little as possible.
import { spawn } from "node:child_process";
import http from "node:http";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../gpu-node/dist/cli.js", import.meta.url));
const MAX_TOKENS = Number(process.env.BENCH_MAX_TOKENS ?? 256);
const LEVELS = (process.env.BENCH_CONCURRENCY ?? "1,64,256").split(",").map(Number);

function startServer() {
  const child = spawn(process.execPath, [CLI, "serve", "--engine", "simulated", "--port", "0", "--max-num-seqs", "512"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      const m = /listening on http:\/\/([\d.]+):(\d+)/.exec(out);
      if (m) resolve({ child, host: m[1], port: Number(m[2]) });
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

function pct(sorted, p) {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN;
}

const server = await startServer();
try {
  await stream(server, []); // warm-up
  const rows = [];
  for (const c of LEVELS) {
    const gaps = [];
    const t0 = performance.now();
    const counts = await Promise.all(Array.from({ length: c }, () => stream(server, gaps)));
    const secs = (performance.now() - t0) / 1000;
    // Content chunks = events minus the role chunk, the finish chunk and [DONE].
    const tokens = counts.reduce((a, n) => a + n - 3, 0);
    gaps.sort((a, b) => a - b);
    rows.push({ streams: c, tokens, tokPerSec: tokens / secs, p50: pct(gaps, 50), p99: pct(gaps, 99) });
  }
  console.log("\ngpu-node host path (simulated zero-cost engine, loopback, server on one process)");
  console.log("| concurrent streams | tokens | streamed tokens/s | gap p50 (ms) | gap p99 (ms) | vs 50k tok/s target |");
  console.log("|---:|---:|---:|---:|---:|---:|");
  for (const r of rows) {
    console.log(`| ${r.streams} | ${r.tokens} | ${Math.round(r.tokPerSec).toLocaleString("en-US")} | ${r.p50.toFixed(3)} | ${r.p99.toFixed(3)} | ${(r.tokPerSec / 50000).toFixed(2)}× |`);
  }
} finally {
  server.child.kill("SIGINT");
  agent.destroy();
}
