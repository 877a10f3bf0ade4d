import type { ChildProcess } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { stopGroup } from "../../edge/scripts/stack.mjs";

/** The sum of a Prometheus counter over all its label sets, from a /metrics text. */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(name)) sum += Number(line.split(" ").pop());
  return sum;
}

/** Kills node process groups, resuming first any a test froze with SIGSTOP. */
export async function stopNodes(children: Iterable<ChildProcess>): Promise<void> {
  for (const child of children) {
    try {
      process.kill(child.pid!, "SIGCONT");
    } catch {
      // already gone
    }
    await stopGroup(child, "SIGKILL");
  }
}

/**
 * Stands between gpu-nodes and the edge and holds every request (their heartbeats) for `holdMs`
 * before passing it on, as a saturated edge does before it gets to one: the edge sees a heartbeat
 * that was signed `holdMs` ago. Answers go back at once. Give its `url` to nodes as their edge.
 */
export async function startHeartbeatHold(edgeUrl: string, holdMs: number): Promise<{ url: string; held: () => number; close(): Promise<void> }> {
  let held = 0;
  const waiting = new Set<NodeJS.Timeout>();
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (p: Buffer) => parts.push(p));
    req.on("end", () => {
      held++;
      const timer = setTimeout(() => {
        waiting.delete(timer);
        const headers = new Headers();
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string" && !HOP_HEADERS.has(k)) headers.set(k, v);
        fetch(new URL(req.url ?? "/", edgeUrl), { method: req.method, headers, body: req.method === "GET" ? undefined : Buffer.concat(parts) })
          .then(async (up) => {
            const body = Buffer.from(await up.arrayBuffer());
            res.writeHead(up.status, { "content-type": up.headers.get("content-type") ?? "application/octet-stream" });
            res.end(body);
          })
          .catch(() => {
            res.writeHead(502);
            res.end();
          });
      }, holdMs);
      waiting.add(timer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    held: () => held,
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of waiting) clearTimeout(timer);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const HOP_HEADERS = new Set(["host", "connection", "content-length", "keep-alive", "transfer-encoding"]);
