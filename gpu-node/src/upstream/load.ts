/** Load as the edge routes on it: requests running and waiting, and the KV cache's fill (0..1). */
export interface UpstreamLoad {
  running: number;
  waiting: number;
  kvUsage: number;
}

/**
 * Metric names of the engines we front, per field; the first present wins. vLLM (and seventy's own
 * gpu-node), SGLang, and llama.cpp's server (`--metrics`). TensorRT-LLM's `trtllm-serve` exposes no
 * Prometheus load gauges: its load is what this node has in flight.
 */
const NAMES: Record<keyof UpstreamLoad, readonly string[]> = {
  running: ["vllm:num_requests_running", "sglang:num_running_reqs", "llamacpp:requests_processing"],
  waiting: ["vllm:num_requests_waiting", "sglang:num_queue_reqs", "llamacpp:requests_deferred"],
  kvUsage: ["vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage", "llamacpp:kv_cache_usage_ratio"],
};

/**
 * The samples of each metric in a Prometheus text exposition, one per label set (an engine with
 * data-parallel ranks reports one per rank).
 */
export function parsePrometheusText(text: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    // name{labels} value [timestamp]; label values may hold spaces, so cut at the closing brace.
    const close = line.lastIndexOf("}");
    const nameEnd = line.indexOf("{");
    const name = nameEnd >= 0 && close > nameEnd ? line.slice(0, nameEnd) : line.split(/\s+/)[0]!;
    const rest = (close > nameEnd && nameEnd >= 0 ? line.slice(close + 1) : line.slice(name.length)).trim().split(/\s+/);
    const value = Number(rest[0]);
    if (!Number.isFinite(value)) continue;
    const samples = out.get(name);
    if (samples) samples.push(value);
    else out.set(name, [value]);
  }
  return out;
}

/**
 * The load in an engine's metrics, or null when it exposes none of the known gauges. Requests are
 * summed over ranks; the KV fill is their mean.
 */
export function loadFromMetrics(metrics: Map<string, number[]>): UpstreamLoad | null {
  const pick = (field: keyof UpstreamLoad) => NAMES[field].map((n) => metrics.get(n)).find((v) => v !== undefined);
  const sum = (v: number[] | undefined) => (v ?? []).reduce((a, b) => a + b, 0);
  const running = pick("running");
  const waiting = pick("waiting");
  if (running === undefined && waiting === undefined) return null;
  const kv = pick("kvUsage");
  return {
    running: Math.max(0, Math.round(sum(running))),
    waiting: Math.max(0, Math.round(sum(waiting))),
    kvUsage: kv ? Math.min(1, Math.max(0, sum(kv) / kv.length)) : 0,
  };
}
