// `npm start`: the local stack. The edge under `wrangler dev` (offline), one gpu-node serving the
// tiny model that joins the edge's pool by signed heartbeats, and a dev API key; then it prints
// how to call it. Ctrl-C stops everything it started.
//
// Environment:
//   EDGE_PORT              edge port (default 8787)
//   NODE_PORT              gpu-node port (default 8100)
//   SEVENTY_DEV_API_KEY    use exactly this key as the dev key (default: a new random key)
//   SEVENTY_ADMIN_TOKEN    the admin token (default: a new random token)
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { join } from "node:path";
import {
  ROOT,
  adminCall,
  freePort,
  registerNode,
  spawnGroup,
  startEdge,
  startNode,
  waitForNodes,
} from "../edge/scripts/stack.mjs";

const edgePort = Number(process.env.EDGE_PORT || 8787);
const nodePort = Number(process.env.NODE_PORT || 8100);
const adminToken = process.env.SEVENTY_ADMIN_TOKEN || `adm-${crypto.randomUUID()}`;
const nodeSecret = `node-${crypto.randomUUID()}`;
const devKey = process.env.SEVENTY_DEV_API_KEY || undefined;
const NODE_ID = "local-node-1";
// The edge's root for deriving each node's keys; the node gets only its own credential.

const started = [];
let stopping = false;

async function stopAll(code) {
  if (stopping) return;
  stopping = true;
  for (const s of started.reverse()) await s.stop().catch(() => undefined);
  process.exit(code);
}

process.on("SIGINT", () => {
  console.log("\nstopping the local stack...");
  void stopAll(0);
});
process.on("SIGTERM", () => void stopAll(0));

async function ensureBuilt() {
  if (existsSync(join(ROOT, "gpu-node", "dist", "cli.js")) && existsSync(join(ROOT, "sdk", "dist", "protocol", "index.js"))) return;
  console.log("building (tsc -b)...");
  const tsc = spawnGroup(join(ROOT, "node_modules", ".bin", "tsc"), ["-b"], { echo: "[build]" });
  const { code } = await tsc.exited;
  if (code !== 0) throw new Error("tsc -b failed");
}

async function main() {
  await ensureBuilt();
  // Local state starts fresh on every start (keys, usage, pool).
  const stateDir = join(ROOT, ".seventy", "dev");
  await rm(stateDir, { recursive: true, force: true });

  console.log(`starting the edge (wrangler dev) on http://127.0.0.1:${edgePort} ...`);
  const edge = await startEdge({
    port: edgePort,
    inspectorPort: await freePort(),
    adminToken,
    nodeSecret,
    stateDir,
    vars: { NODE_TTL_MS: "6000" },
    echo: "[edge]",
    logLevel: "info",
  });
  started.push(edge);

  console.log(`starting a gpu-node on http://127.0.0.1:${nodePort} (tiny model, reference engine) ...`);
  const credential = await registerNode(edge.url, adminToken, { id: NODE_ID, port: nodePort });
  const node = await startNode({ port: nodePort, edgeUrl: edge.url, credential, echo: "[node]" });
  started.push(node);
  await waitForNodes(edge.url, adminToken, [NODE_ID]);

  const created = await adminCall(edge.url, adminToken, "POST", "/admin/keys", {
    name: "dev",
    ...(devKey ? { key: devKey } : {}),
    limits: { rpm: 600, tpm: 2_000_000, concurrency: 16 },
  });
  const models = await (await fetch(`${edge.url}/v1/models`, { headers: { authorization: `Bearer ${created.key}` } })).json();
  const model = models.data?.[0]?.id ?? "tiny-llama-3.1";

  console.log(`
seventy is running.

  edge      ${edge.url}   (admin token: ${adminToken})
  gpu-node  ${node.url}   (${NODE_ID}, model ${model})
  dev key   ${created.key}
  dashboard ${edge.url}/dashboard   (sign in with the admin token; chat at ${edge.url}/playground)

Stream an answer:

  curl -N ${edge.url}/v1/chat/completions \\
    -H "Authorization: Bearer ${created.key}" -H "Content-Type: application/json" \\
    -d '{"model":"${model}","messages":[{"role":"user","content":"Hello!"}],"max_tokens":16,"stream":true}'

  or from TypeScript:
    baseURL: "${edge.url}/v1", apiKey: "${created.key}"

Admin: curl -H "Authorization: Bearer ${adminToken}" ${edge.url}/admin/nodes

Ctrl-C stops everything.
`);

  // If either child dies, take the rest down too.
  const exited = await Promise.race(started.map((s) => s.child.exited.then((r) => ({ s, r }))));
  if (!stopping) {
    console.error(`${exited.s === edge ? "the edge" : "the gpu-node"} exited (${exited.r.signal ?? exited.r.code}); stopping.`);
    await stopAll(1);
  }
}

main().catch(async (err) => {
  console.error(err instanceof Error ? err.message : err);
  await stopAll(1);
});
