import type { PoolNode } from "../pool/node-pool";

const SHARE_MS = 250;

/**
 * Is a node's process running? Asked of a node that owes a non-stream answer and has sent no
 * response headers yet: a long answer legitimately sends none until it is done, but a frozen
 * process (SIGSTOP, a hung host) sends none either, and its kernel still accepts connections, so
 * neither a connect timeout nor the open request tells the two apart. `GET /health` does: a
 * running gpu-node answers it at once whatever it is generating, a frozen one never.
 *
 * Requests waiting on the same node share a probe started less than SHARE_MS ago, so a thousand
 * of them ask it a few times a second, not a thousand times.
 */
export class NodeProbe {
  private readonly recent = new Map<string, { at: number; answer: Promise<boolean> }>();

  /** True when `node` answers /health within `timeoutMs`. */
  alive(node: PoolNode, timeoutMs: number): Promise<boolean> {
    const now = Date.now();
    const seen = this.recent.get(node.id);
    if (seen && now - seen.at < SHARE_MS) return seen.answer;
    const answer = probeHealth(node.url, timeoutMs);
    this.recent.set(node.id, { at: now, answer });
    if (this.recent.size > 1024) for (const [id, p] of this.recent) if (now - p.at >= SHARE_MS) this.recent.delete(id);
    return answer;
  }
}

async function probeHealth(url: string, timeoutMs: number): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(timeoutMs) });
    await res.body?.cancel().catch(() => undefined);
    // Any answer (a 503 while draining too) means the process runs.
    return true;
  } catch {
    return false;
  }
}

/** The isolate's probes (module state is per isolate in Workers). */
export const nodeProbe = new NodeProbe();
