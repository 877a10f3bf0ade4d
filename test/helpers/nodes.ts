import type { ChildProcess } from "node:child_process";
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
