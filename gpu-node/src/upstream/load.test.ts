import { describe, expect, it } from "vitest";
import { normalizeUpstreamError } from "./errors.js";
import { loadFromMetrics, parsePrometheusText } from "./load.js";

describe("load from an engine's Prometheus metrics", () => {
  it("reads vLLM's names", () => {
    const text = `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-70B-Instruct"} 7.0
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-70B-Instruct"} 2.0
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-70B-Instruct"} 0.42
vllm:prompt_tokens_total{model_name="m"} 1234
`;
    expect(loadFromMetrics(parsePrometheusText(text))).toEqual({ running: 7, waiting: 2, kvUsage: 0.42 });
  });

  it("reads vLLM's older KV name, SGLang's names summed over data-parallel ranks, and llama.cpp's", () => {
    expect(loadFromMetrics(parsePrometheusText("vllm:num_requests_running 1\nvllm:gpu_cache_usage_perc 0.5\n"))).toEqual({ running: 1, waiting: 0, kvUsage: 0.5 });
    const sglang = `sglang:num_running_reqs{model_name="m",dp_rank="0"} 3
sglang:num_running_reqs{model_name="m",dp_rank="1"} 4
sglang:num_queue_reqs{model_name="m",dp_rank="0"} 1
sglang:num_queue_reqs{model_name="m",dp_rank="1"} 0
sglang:token_usage{model_name="m",dp_rank="0"} 0.2
sglang:token_usage{model_name="m",dp_rank="1"} 0.4
`;
    const load = loadFromMetrics(parsePrometheusText(sglang))!;
    expect(load.running).toBe(7);
    expect(load.waiting).toBe(1);
    expect(load.kvUsage).toBeCloseTo(0.3);
    expect(loadFromMetrics(parsePrometheusText("llamacpp:requests_processing 2\nllamacpp:requests_deferred 5\nllamacpp:kv_cache_usage_ratio 0.1\n"))).toEqual({ running: 2, waiting: 5, kvUsage: 0.1 });
  });

  it("label values with spaces and braces, timestamps, NaN and junk lines", () => {
    const m = parsePrometheusText('vllm:num_requests_running{model_name="a b}c"} 3 1700000000000\nbad line\nvllm:num_requests_waiting NaN\n');
    expect(m.get("vllm:num_requests_running")).toEqual([3]);
    expect(m.has("vllm:num_requests_waiting")).toBe(false);
  });

  it("no known gauges is no load (the node counts what it has in flight)", () => {
    expect(loadFromMetrics(parsePrometheusText("process_cpu_seconds_total 1\n"))).toBeNull();
  });
});

describe("upstream errors in OpenAI's shape", () => {
  it("vLLM/SGLang/TensorRT-LLM's {object: 'error'} body", () => {
    const r = normalizeUpstreamError(400, JSON.stringify({ object: "error", message: "max_tokens is too large", type: "BadRequestError", param: "max_tokens", code: 400 }));
    expect(r).toEqual({ status: 400, body: { error: { message: "max_tokens is too large", type: "invalid_request_error", param: "max_tokens", code: null } } });
  });
  it("llama.cpp's and OpenAI's {error: {…}} body keeps a string code", () => {
    const r = normalizeUpstreamError(400, JSON.stringify({ error: { code: "context_length_exceeded", message: "too long", type: "invalid_request_error" } }));
    expect(r.body.error).toEqual({ message: "too long", type: "invalid_request_error", param: null, code: "context_length_exceeded" });
  });
  it("FastAPI's validation detail and a plain-text 5xx", () => {
    expect(normalizeUpstreamError(422, JSON.stringify({ detail: [{ loc: ["body", "messages"], msg: "Field required" }] })).body.error.message).toBe("body.messages: Field required");
    const r = normalizeUpstreamError(500, "Internal Server Error");
    expect(r.status).toBe(500);
    expect(r.body.error).toEqual({ message: "Internal Server Error", type: "server_error", param: null, code: "upstream_error" });
  });
});
