import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../../../", import.meta.url));

export interface GpuNode {
  url: string;
  stop(): Promise<void>;
}

/** A real gpu-node (`gpu-node/dist/cli.js serve`, tiny model), reporting to `edgeUrl` when given. */
export async function startGpuNode(opts: { port: number; edgeUrl?: string; credential?: string; timeoutMs?: number }): Promise<GpuNode> {
  const args = ["gpu-node/dist/cli.js", "serve", "--port", String(opts.port), "--heartbeat-interval-ms", "500"];
  if (opts.edgeUrl) args.push("--edge", opts.edgeUrl);
  const child = spawn(process.execPath, args, {
    cwd: root,
    env: { ...process.env, ...(opts.credential ? { SEVENTY_NODE_CREDENTIAL: opts.credential } : {}) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gpu-node did not start:\n${log}`)), opts.timeoutMs ?? 60_000);
    const onData = (d: Buffer) => {
      log += d;
      const m = /listening on (http:\/\/\S+)/.exec(log);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => reject(new Error(`gpu-node exited with ${code}:\n${log}`)));
  });
  return {
    url,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      await exited;
    },
  };
}
