import { loadFromMetrics, parsePrometheusText, type UpstreamLoad } from "./load.js";

/** What the node learns from its engine on every heartbeat. */
export interface UpstreamState {
  /** The engine answered `/v1/models`. */
  up: boolean;
  /** The engine's model id (first of `/v1/models`). */
  modelId?: string;
  /** From `/v1/models` where the engine reports it (vLLM, SGLang). */
  maxModelLen?: number;
  /** From its Prometheus metrics, or null when it has none. */
  load: UpstreamLoad | null;
  /** Why it is down. */
  error?: string;
}

/** Asks the engine for its model and its load, each bounded by `timeoutMs`. */
export async function probeUpstream(upstream: string, opts: { apiKey?: string; timeoutMs?: number } = {}): Promise<UpstreamState> {
  const headers = opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : undefined;
  const get = (path: string) => fetch(new URL(path, upstream), { headers, signal: AbortSignal.timeout(opts.timeoutMs ?? 2000) });
  const [models, metrics] = await Promise.allSettled([
    get("/v1/models").then(async (r) => {
      if (!r.ok) throw new Error(`/v1/models answered ${r.status}`);
      return (await r.json()) as { data?: { id?: unknown; max_model_len?: unknown }[] };
    }),
    get("/metrics").then(async (r) => (r.ok ? r.text() : "")),
  ]);
  const load = metrics.status === "fulfilled" && metrics.value ? loadFromMetrics(parsePrometheusText(metrics.value)) : null;
  if (models.status === "rejected") {
    const e = models.reason as Error & { cause?: { code?: string } };
    return { up: false, load, error: e.cause?.code ?? e.message };
  }
  const first = models.value.data?.[0];
  if (!first || typeof first.id !== "string") return { up: false, load, error: "/v1/models lists no model" };
  return {
    up: true,
    modelId: first.id,
    maxModelLen: typeof first.max_model_len === "number" && first.max_model_len > 0 ? first.max_model_len : undefined,
    load,
  };
}
