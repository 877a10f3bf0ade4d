import { Counter, Gauge, Histogram, Registry } from "prom-client";

/**
 * Prometheus metrics under vLLM's names where one exists, so existing vLLM dashboards work.
 * One registry per node (not prom-client's global one), so several nodes can live in one process.
 */
export class NodeMetrics {
  readonly registry = new Registry();
  readonly running: Gauge;
  readonly waiting: Gauge;
  readonly kvUsage: Gauge;
  readonly prefixHitRate: Gauge;
  readonly promptTokens: Counter;
  readonly generationTokens: Counter;
  readonly requestSuccess: Counter;
  readonly preemptions: Gauge;
  readonly ttft: Histogram;
  readonly itl: Histogram;
  readonly e2e: Histogram;
  readonly grammarCompileSeconds: Histogram<"kind">;
  readonly grammarMaskSeconds: Histogram;
  readonly stepHostSeconds: Histogram<"part">;
  readonly overlappedSteps: Gauge;

  constructor(modelName: string) {
    this.registry.setDefaultLabels({ model_name: modelName });
    const registers = [this.registry];
    this.running = new Gauge({ name: "vllm:num_requests_running", help: "Requests in the running batch.", registers });
    this.waiting = new Gauge({ name: "vllm:num_requests_waiting", help: "Requests waiting to be admitted.", registers });
    this.kvUsage = new Gauge({ name: "vllm:kv_cache_usage_perc", help: "Fraction of KV blocks in use (0-1).", registers });
    this.prefixHitRate = new Gauge({
      name: "seventy:prefix_cache_hit_rate",
      help: "Prompt tokens served from the prefix cache / prompt tokens queried.",
      registers,
    });
    this.preemptions = new Gauge({ name: "vllm:num_preemptions", help: "Preemptions since start.", registers });
    this.promptTokens = new Counter({ name: "vllm:prompt_tokens_total", help: "Prompt tokens processed.", registers });
    this.generationTokens = new Counter({ name: "vllm:generation_tokens_total", help: "Tokens generated.", registers });
    this.requestSuccess = new Counter({
      name: "vllm:request_success_total",
      help: "Finished requests by finish reason.",
      labelNames: ["finished_reason"],
      registers,
    });
    const latencyBuckets = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
    this.ttft = new Histogram({
      name: "vllm:time_to_first_token_seconds",
      help: "Time to first token.",
      buckets: latencyBuckets,
      registers,
    });
    this.itl = new Histogram({
      name: "vllm:inter_token_latency_seconds",
      help: "Time between consecutive tokens of a request.",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2.5],
      registers,
    });
    this.e2e = new Histogram({
      name: "vllm:e2e_request_latency_seconds",
      help: "End-to-end request latency.",
      buckets: [0.3, 0.5, 0.8, 1, 1.5, 2, 2.5, 5, 10, 15, 20, 30, 40, 50, 60, 120, 240, 480],
      registers,
    });
    this.grammarCompileSeconds = new Histogram({
      name: "seventy:grammar_compile_seconds",
      help: "Grammar compilations for constrained decoding (cache misses, on grammar threads; those stopped at the compile timeout count at the timeout), by constraint kind.",
      labelNames: ["kind"],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.grammarMaskSeconds = new Histogram({
      name: "seventy:grammar_mask_seconds",
      help: "Time to compute one constrained sequence's next-token mask over the whole vocabulary (on its grammar thread).",
      buckets: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05],
      registers,
    });
    this.stepHostSeconds = new Histogram({
      name: "seventy:step_host_seconds",
      help:
        "Host time per engine step, by part: schedule (deciding the step and packing it for the engine), handoff (its tokens to the " +
        "requests), engine (the native engine thread's plan upload and read-back; CUDA flavor). With overlapped steps the " +
        "handoff runs while the next step is on the GPU.",
      labelNames: ["part"],
      buckets: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05],
      registers,
    });
    this.overlappedSteps = new Gauge({
      name: "seventy:overlapped_steps",
      help: "Engine steps handed to the engine before the previous step's tokens went to the requests, since start.",
      registers,
    });
  }
}
