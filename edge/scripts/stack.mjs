// Starting and stopping the local stack (the edge under workerd + gpu-nodes) for `npm start`, the
// integration tests and the benchmark. Every child runs in its own process group so that one
// signal stops it and everything it started.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { assetsServerModule } from "./assets-server.mjs";

/** The repository root. */
export const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));

/** wrangler offline: no metrics, no network look-ups, no banner, config kept in the project. */
export function wranglerEnv() {
  return {
    ...process.env,
    WRANGLER_SEND_METRICS: "false",
    CLOUDFLARE_CF_FETCH_ENABLED: "false",
    WRANGLER_HIDE_BANNER: "true",
    XDG_CONFIG_HOME: join(ROOT, ".wrangler", "config"),
  };
}

/** A port the OS says is free now. */
export async function freePort() {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = server.address();
  await new Promise((r) => server.close(r));
  return port;
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it returns a truthy value (returned), or fails after `timeoutMs`. */
export async function waitFor(check, { timeoutMs = 30_000, intervalMs = 100, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await sleep(intervalMs);
  }
}

/**
 * Spawns a child in its own process group, keeping the last output for error messages.
 * `echo` copies its output to this process's stdout/stderr with a prefix.
 */
export function spawnGroup(cmd, args, { env = process.env, cwd = ROOT, echo = null } = {}) {
  const child = spawn(cmd, args, { cwd, env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let tail = "";
  const keep = (buf, stream) => {
    const s = buf.toString();
    tail = (tail + s).slice(-8000);
    if (echo) for (const line of s.split("\n")) if (line.trim()) stream.write(`${echo} ${line}\n`);
  };
  child.stdout.on("data", (b) => keep(b, process.stdout));
  child.stderr.on("data", (b) => keep(b, process.stderr));
  child.exited = new Promise((r) => child.once("exit", (code, signal) => r({ code, signal })));
  child.output = () => tail;
  return child;
}

function alive(child) {
  return child.exitCode === null && child.signalCode === null;
}

/** Signals the child's whole process group; escalates to SIGKILL after `graceMs`. */
export async function stopGroup(child, signal = "SIGINT", graceMs = 5000) {
  if (!child || !alive(child)) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    return;
  }
  const timer = sleep(graceMs).then(() => "timeout");
  if ((await Promise.race([child.exited, timer])) === "timeout" && alive(child)) {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // already gone
    }
    await child.exited;
  }
}

/**
 * Reads `[vars]`, compatibility date and flags, the assets folder and the Durable Object bindings
 * (class name → binding name) from wrangler.toml (flat key = "value" lines).
 */
export async function readWranglerToml() {
  const text = await readFile(join(ROOT, "wrangler.toml"), "utf8");
  const vars = {};
  let section = "";
  let compatibilityDate = "2026-04-20";
  let compatibilityFlags = [];
  let assetsDirectory = null;
  const objects = {};
  let binding = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line.startsWith("[")) section = line;
    if (line === "[[durable_objects.bindings]]") binding = {};
    const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.+)$/.exec(line);
    if (!m) continue;
    if (section === "[vars]") vars[m[1]] = JSON.parse(m[2]);
    else if (section === "" && m[1] === "compatibility_date") compatibilityDate = JSON.parse(m[2]);
    else if (section === "" && m[1] === "compatibility_flags") compatibilityFlags = JSON.parse(m[2]);
    else if (section === "[assets]" && m[1] === "directory") assetsDirectory = join(ROOT, JSON.parse(m[2]));
    else if (section === "[[durable_objects.bindings]]" && (m[1] === "name" || m[1] === "class_name")) {
      binding[m[1]] = JSON.parse(m[2]);
      if (binding.name && binding.class_name) objects[binding.class_name] = binding.name;
    }
  }
  return { vars, compatibilityDate, compatibilityFlags, assetsDirectory, objects };
}

/** The deploy bundle (`wrangler deploy --dry-run`, offline) in `outdir`; returns its size in bytes. */
export async function buildBundle(outdir) {
  const child = spawnGroup(join(ROOT, "node_modules", ".bin", "wrangler"), ["deploy", "--dry-run", "--outdir", outdir], { env: wranglerEnv() });
  const { code } = await child.exited;
  if (code !== 0) throw new Error(`wrangler deploy --dry-run failed:\n${child.output()}`);
  return (await readFile(join(outdir, "index.js"))).byteLength;
}

/**
 * A workerd config serving `bundle` (a path relative to `dir`) on 127.0.0.1:`port`, Durable
 * Objects stored under `dir`, outbound fetches allowed to loopback. Written with mode 0600: the
 * bindings hold secrets.
 */
export async function workerdConfig({ dir, name = "edge", port, bundle, assets = null, vars, compatibilityDate, compatibilityFlags, objects = null }) {
  // By default the edge's own Durable Objects, as wrangler.toml binds them.
  objects ??= (await readWranglerToml()).objects;
  const q = (s) => JSON.stringify(s);
  const classes = Object.keys(objects);
  const bindings = [
    ...Object.entries(vars).map(([k, v]) => `(name = ${q(k)}, text = ${q(String(v))})`),
    ...classes.map((c) => `(name = ${q(objects[c])}, durableObjectNamespace = (className = ${q(c)}))`),
    ...(assets ? [`(name = "ASSETS", service = "assets")`] : []),
  ];
  const config = `using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "edge", worker = .edge),
    (name = "do-disk", disk = (path = ${q(join(dir, `do-${name}`))}, writable = true)),
    (name = "internet", network = (allow = ["public", "private", "local"])),${
      assets ? `\n    (name = "assets", worker = (modules = [ (name = "assets.js", esModule = embed ${q(assets)}) ], compatibilityDate = ${q(compatibilityDate)})),` : ""
    }
  ],
  sockets = [ (name = "http", address = "127.0.0.1:${port}", http = (), service = "edge") ],
);
const edge :Workerd.Worker = (
  # embed paths are relative to this file
  modules = [ (name = "index.js", esModule = embed ${q(bundle)}) ],
  compatibilityDate = ${q(compatibilityDate)},
  compatibilityFlags = [${compatibilityFlags.map(q).join(", ")}],
  bindings = [
    ${bindings.join(",\n    ")}
  ],
  durableObjectNamespaces = [
    ${classes.map((c) => `(className = ${q(c)}, uniqueKey = ${q(`seventy-${c}`)}, enableSql = true)`).join(",\n    ")}
  ],
  durableObjectStorage = (localDisk = "do-disk"),
  globalOutbound = "internet",
);
`;
  await mkdir(join(dir, `do-${name}`), { recursive: true });
  const path = join(dir, `${name}.capnp`);
  await writeFile(path, config, { mode: 0o600 });
  await chmod(path, 0o600);
  return path;
}

/**
 * Starts the edge as production runs it: the deploy bundle (`wrangler deploy --dry-run`) under
 * bare `workerd serve`, vars from wrangler.toml with `vars` laid over them, secrets as bindings in
 * a private config file, Durable Objects stored under `stateDir`; clients reach it through a small
 * front (front.mjs) that keeps their idle connections open, as Cloudflare's front line does.
 * Waits until it answers /health.
 *
 * Not `wrangler dev`: its inspector proxy relays one devtools message per streamed chunk and ran
 * out of file descriptors at a few hundred concurrent streams. `runner: "wrangler"` still starts
 * `wrangler dev` (live reload while editing the worker); `inspectorPort` is used only then.
 */
export async function startEdge({
  port,
  inspectorPort,
  adminToken,
  nodeSecret,
  vars = {},
  stateDir,
  echo = null,
  logLevel = "warn",
  timeoutMs = 60_000,
  runner = "workerd",
}) {
  await mkdir(stateDir, { recursive: true });
  let child;
  if (runner === "wrangler") {
    child = await spawnWranglerDev({ port, inspectorPort, adminToken, nodeSecret, vars, stateDir, echo, logLevel });
  } else {
    await buildBundle(join(stateDir, "dist"));
    const toml = await readWranglerToml();
    // The dashboard's static files, served as Cloudflare's asset layer serves them (see assets-server.mjs).
    const assets = toml.assetsDirectory ? await assetsServerModule(toml.assetsDirectory) : null;
    if (assets) await writeFile(join(stateDir, "dist", "assets.js"), assets);
    const workerdPort = await freePort();
    const config = await workerdConfig({
      dir: stateDir,
      port: workerdPort,
      bundle: "dist/index.js",
      assets: assets ? "dist/assets.js" : null,
      // A local stack's nodes listen on http://127.0.0.1: let them register (never set in production).
      vars: { ...toml.vars, ALLOW_HTTP_LOOPBACK_NODES: "true", ...vars, ADMIN_TOKEN: adminToken, NODE_SECRET: nodeSecret },
      compatibilityDate: toml.compatibilityDate,
      compatibilityFlags: toml.compatibilityFlags,
    });
    const args = ["serve", config];
    // Worker console output (the request log) shows with --verbose.
    if (logLevel === "info" || logLevel === "log" || logLevel === "debug") args.push("--verbose");
    // Clients connect to the front (front.mjs), which holds their connections as Cloudflare's front
    // line does: workerd alone resets a pooled connection that sat idle for about 5 s.
    child = spawnGroup(process.execPath, [join(ROOT, "edge", "scripts", "front.mjs"), String(port), String(workerdPort), join(ROOT, "node_modules", ".bin", "workerd"), ...args], { echo });
  }
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitFor(
      async () => {
        if (!alive(child)) throw new Error(`the edge exited:\n${child.output()}`);
        const res = await fetch(`${url}/health`);
        return res.ok;
      },
      { timeoutMs, intervalMs: 150, what: "the edge to answer /health" },
    );
  } catch (err) {
    await stopGroup(child);
    throw new Error(`${err.message}\n${child.output()}`);
  }
  return { url, child, stop: () => stopGroup(child, "SIGINT") };
}

async function spawnWranglerDev({ port, inspectorPort, adminToken, nodeSecret, vars, stateDir, echo, logLevel }) {
  const envFile = join(stateDir, "edge.env");
  await writeFile(envFile, `ADMIN_TOKEN=${adminToken}\nNODE_SECRET=${nodeSecret}\n`, { mode: 0o600 });
  await chmod(envFile, 0o600);
  const args = [
    "dev",
    "--config", join(ROOT, "wrangler.toml"),
    "--ip", "127.0.0.1",
    "--port", String(port),
    "--inspector-port", String(inspectorPort ?? (await freePort())),
    "--show-interactive-dev-session=false",
    "--env-file", envFile,
    "--persist-to", join(stateDir, "wrangler-state"),
    "--log-level", logLevel,
  ];
  // A local stack's nodes listen on http://127.0.0.1: let them register (never set in production).
  for (const [k, v] of Object.entries({ ALLOW_HTTP_LOOPBACK_NODES: "true", ...vars })) args.push("--var", `${k}:${v}`);
  return spawnGroup(join(ROOT, "node_modules", ".bin", "wrangler"), args, { env: wranglerEnv(), echo });
}

/**
 * Registers a node with the edge (its id and loopback URL) and returns its credential, which
 * `startNode` passes as SEVENTY_NODE_CREDENTIAL.
 */
export async function registerNode(edgeUrl, adminToken, { id, port }) {
  const { credential } = await adminCall(edgeUrl, adminToken, "POST", "/admin/nodes", { id, url: `http://127.0.0.1:${port}` });
  return credential;
}

/**
 * Starts a gpu-node (`node gpu-node/dist/cli.js serve ...`) and waits for "listening on". With
 * `edgeUrl` it needs the node's `credential` (from `registerNode`); its id is the credential's.
 */
export async function startNode({ port, edgeUrl, credential, nodeId, engine = "reference", args = [], env = {}, echo = null, timeoutMs = 90_000 }) {
  const cli = join(ROOT, "gpu-node", "dist", "cli.js");
  const argv = [cli, "serve", "--host", "127.0.0.1", "--port", String(port), "--engine", engine, ...args];
  if (edgeUrl) argv.push("--edge", edgeUrl);
  if (nodeId) argv.push("--node-id", nodeId);
  const childEnv = { ...process.env, ...env, SEVENTY_NODE_CREDENTIAL: credential ?? "" };
  delete childEnv.SEVENTY_NODE_SECRET;
  const child = spawnGroup(process.execPath, argv, { env: childEnv, echo });
  try {
    await waitFor(
      () => {
        if (!alive(child)) throw new Error(`gpu-node exited:\n${child.output()}`);
        return /listening on http/.test(child.output());
      },
      { timeoutMs, intervalMs: 100, what: `gpu-node ${nodeId ?? port} to listen` },
    );
  } catch (err) {
    await stopGroup(child, "SIGTERM");
    throw new Error(`${err.message}\n${child.output()}`);
  }
  const id = nodeId ?? credential?.split(".")[1];
  return { url: `http://127.0.0.1:${port}`, id, child, stop: () => stopGroup(child, "SIGTERM") };
}

/** A JSON call to the admin API. */
export async function adminCall(edgeUrl, token, method, path, json) {
  const res = await fetch(`${edgeUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(json !== undefined ? { "content-type": "application/json" } : {}) },
    body: json !== undefined ? JSON.stringify(json) : undefined,
  });
  const body = await res.json();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(body)}`);
  return body;
}

/** Waits until every id in `ids` is in the pool with `status` (default healthy). */
export async function waitForNodes(edgeUrl, token, ids, { status = "healthy", timeoutMs = 30_000 } = {}) {
  return waitFor(
    async () => {
      const { data } = await adminCall(edgeUrl, token, "GET", "/admin/nodes");
      return ids.every((id) => data.some((n) => n.id === id && n.status === status)) ? data : null;
    },
    { timeoutMs, intervalMs: 100, what: `nodes ${ids.join(", ")} to be ${status}` },
  );
}
