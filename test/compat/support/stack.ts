import { spawn, type ChildProcess } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../../", import.meta.url));

/** A free loopback port (bound, then released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

export interface Stack {
  /** The edge's origin, e.g. http://127.0.0.1:8787 */
  origin: string;
  /** The OpenAI-compatible root: `${origin}/v1` */
  baseURL: string;
  apiKey: string;
  adminToken: string;
  /** The model the gpu-node serves. */
  model: string;
  /** Everything the stack printed, for failure messages. */
  output(): string;
  stop(): Promise<void>;
}

/**
 * The local stack as a developer runs it (`npm start`: a gpu-node on the tiny model and the edge
 * under wrangler dev), on free ports, ready once the edge lists the node's model.
 */
export async function startStack(timeoutMs = 150_000): Promise<Stack> {
  const [edgePort, nodePort] = [await freePort(), await freePort()];
  const apiKey = `sk-test-${Math.random().toString(36).slice(2, 12)}`;
  const adminToken = `admin-${Math.random().toString(36).slice(2, 12)}`;
  let log = "";
  const child: ChildProcess = spawn(process.execPath, ["scripts/start.mjs"], {
    cwd: root,
    env: {
      ...process.env,
      EDGE_PORT: String(edgePort),
      NODE_PORT: String(nodePort),
      SEVENTY_DEV_API_KEY: apiKey,
      SEVENTY_ADMIN_TOKEN: adminToken,
    },
    // Its own process group, so stop() reaches wrangler's and the node's children too.
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout!.on("data", (d) => (log += d));
  child.stderr!.on("data", (d) => (log += d));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));

  const stop = async () => {
    if (child.exitCode !== null || child.pid === undefined) return;
    try {
      process.kill(-child.pid, "SIGINT");
    } catch {
      return;
    }
    const hard = setTimeout(() => {
      try {
        process.kill(-child.pid!, "SIGKILL");
      } catch {
        /* already gone */
      }
    }, 10_000);
    await exited;
    clearTimeout(hard);
  };

  const origin = `http://127.0.0.1:${edgePort}`;
  const deadline = Date.now() + timeoutMs;
  let model: string | undefined;
  while (Date.now() < deadline && child.exitCode === null) {
    try {
      const res = await fetch(`${origin}/v1/models`, { headers: { authorization: `Bearer ${apiKey}` } });
      if (res.ok) {
        const list = (await res.json()) as { data: { id: string }[] };
        model = list.data[0]?.id;
        if (model) break;
      }
    } catch {
      /* not up yet */
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  if (!model) {
    await stop();
    throw new Error(`The stack did not become ready (exit code ${child.exitCode}). Output:\n${log.slice(-4000)}`);
  }
  return { origin, baseURL: `${origin}/v1`, apiKey, adminToken, model, output: () => log, stop };
}
