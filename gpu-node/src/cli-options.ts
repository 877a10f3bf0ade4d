import type { ParseArgsConfig } from "node:util";

/**
 * The flags of each `seventy-node` command, as `parseArgs` reads them: one table per command, so the
 * CLI and the checks on the documented commands (README, systemd unit) use the same source.
 */
type Options = NonNullable<ParseArgsConfig["options"]>;

export const SERVE_OPTIONS = {
  model: { type: "string" },
  revision: { type: "string" },
  engine: { type: "string", default: "reference" },
  host: { type: "string", default: "127.0.0.1" },
  port: { type: "string", default: "8100" },
  "served-model-name": { type: "string" },
  "max-num-seqs": { type: "string" },
  "max-num-batched-tokens": { type: "string" },
  "kv-cache-blocks": { type: "string" },
  "max-model-len": { type: "string" },
  "max-queue": { type: "string" },
  "max-body-bytes": { type: "string" },
  "max-connections": { type: "string" },
  "tokenizer-threads": { type: "string" },
  "stream-stall-ms": { type: "string" },
  "grammar-threads": { type: "string" },
  "grammar-compile-timeout-ms": { type: "string" },
  edge: { type: "string" },
  "node-id": { type: "string" },
  "public-url": { type: "string" },
  "heartbeat-interval-ms": { type: "string" },
  quantization: { type: "string" },
  "kv-cache-dtype": { type: "string" },
  "embedding-device": { type: "string" },
  "lm-head-dtype": { type: "string" },
  "device-memory": { type: "string" },
  "load-format": { type: "string" },
  "gpu-memory-utilization": { type: "string" },
  "simulated-step-ms": { type: "string" },
  upstream: { type: "string" },
} as const satisfies Options;

export const DOWNLOAD_OPTIONS = {
  revision: { type: "string" },
  "max-workers": { type: "string" },
} as const satisfies Options;

export const DOCTOR_OPTIONS = {
  model: { type: "string" },
  revision: { type: "string" },
  edge: { type: "string" },
  host: { type: "string" },
  port: { type: "string" },
  engine: { type: "string" },
  quantization: { type: "string" },
  "kv-cache-dtype": { type: "string" },
  "embedding-device": { type: "string" },
  "lm-head-dtype": { type: "string" },
  "gpu-memory-utilization": { type: "string" },
  "max-model-len": { type: "string" },
  "max-num-seqs": { type: "string" },
} as const satisfies Options;

export const MAKE_TINY_MODEL_OPTIONS = {
  out: { type: "string" },
  seed: { type: "string", default: "0" },
  quant: { type: "string" },
} as const satisfies Options;

export const COMMAND_OPTIONS: Record<string, Options> = {
  serve: SERVE_OPTIONS,
  download: DOWNLOAD_OPTIONS,
  doctor: DOCTOR_OPTIONS,
  "make-tiny-model": MAKE_TINY_MODEL_OPTIONS,
};
