import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { ROOT, freePort, registerNode, startEdge, startNode, stopGroup, waitForNodes } from "../../../edge/scripts/stack.mjs";
import { SeventyAdmin } from "@seventy/sdk";

export { freePort };

export interface Stack {
  /** The edge's origin, e.g. http://127.0.0.1:8787 */
  origin: string;
  /** The OpenAI-compatible root: `${origin}/v1` */
  baseURL: string;
  /** A key created for the run (default limits raised so tests do not trip them). */
  apiKey: string;
  adminToken: string;
  /** The model the gpu-node serves. */
  model: string;
  /** The secret nodes share with the edge (to join more nodes). */
  nodeSecret: string;
  /** The last output of the edge and the gpu-node, to print when a test fails. */
  logs(): string;
  stop(): Promise<void>;
}

const random = () => Math.random().toString(36).slice(2, 12);

/**
 * The local stack as `npm start` runs it: the edge's deploy bundle under bare workerd (the
 * dashboard's files from its ASSETS binding) and a gpu-node on the tiny model reporting to it, on
 * free ports, with state in a fresh folder under .seventy/. `runner: "wrangler"` starts the edge
 * under `wrangler dev` instead (Cloudflare's own asset layer, and a browser's aborted fetch reaches
 * the worker at once; under bare workerd it is noticed only when the stream next stalls).
 */
export async function startStack(opts: { runner?: "workerd" | "wrangler" } = {}): Promise<Stack> {
  const [edgePort, inspectorPort, nodePort] = [await freePort(), await freePort(), await freePort()];
  const adminToken = `admin-${random()}`;
  const nodeSecret = `node-${random()}`;
  await mkdir(join(ROOT, ".seventy"), { recursive: true });
  const stateDir = await mkdtemp(join(ROOT, ".seventy", "test-"));
  const edge = await startEdge({ port: edgePort, inspectorPort, adminToken, nodeSecret, stateDir, runner: opts.runner });
  let node: Awaited<ReturnType<typeof startNode>> | undefined;
  const stop = async () => {
    await node?.stop();
    await edge.stop();
    await rm(stateDir, { recursive: true, force: true });
  };
  try {
    const nodeId = `node-${random()}`;
    const credential = await registerNode(edge.url, adminToken, { id: nodeId, port: nodePort });
    node = await startNode({ port: nodePort, edgeUrl: edge.url, credential });
    await waitForNodes(edge.url, adminToken, [node.id!]);
    const admin = new SeventyAdmin({ baseURL: edge.url, adminToken });
    const pooled = (await admin.nodes.list()).data.find((n) => n.id === node!.id)!;
    const { key } = await admin.keys.create({ name: "test run", limits: { rpm: 10_000, tpm: 100_000_000, concurrency: 64 } });
    const logs = () => `--- edge ---\n${edge.child.output()}\n--- gpu-node ---\n${node!.child.output()}`;
    return { origin: edge.url, baseURL: `${edge.url}/v1`, apiKey: key, adminToken, model: pooled.models[0]!, nodeSecret, logs, stop };
  } catch (err) {
    await stopGroup(node?.child);
    await stop();
    throw err;
  }
}
