import { parseArgs } from "node:util";
import { DOCTOR_OPTIONS, DOWNLOAD_OPTIONS, MAKE_TINY_MODEL_OPTIONS, SERVE_OPTIONS } from "./cli-options.js";
import { ENGINE_CHOICES, type EngineChoice } from "./engine-factory.js";
import { downloadModel, formatDownloadResult, isRepoId, resolveModel } from "./hub/index.js";
import { makeTinyModel } from "./model/index.js";
import { formatDoctor, runDoctor, systemFacts } from "./doctor/index.js";
import { startNode } from "./node.js";
import { startUpstreamNode } from "./upstream/index.js";

const USAGE = `usage:
  seventy-node serve [--model DIR|ORG/NAME] [--revision R] [--engine reference|native|simulated|upstream] [--host 127.0.0.1] [--port 8100]
                     [--served-model-name NAME] [--max-num-seqs N] [--max-num-batched-tokens N]
                     [--kv-cache-blocks N] [--max-model-len N] [--max-queue N]
                     [--edge URL] [--node-id ID] [--public-url URL] [--heartbeat-interval-ms N]
                     [--simulated-step-ms N]  (engine simulated: wall time of one step)
                     [--quantization none|fp8] [--kv-cache-dtype auto|fp8] [--load-format safetensors|dummy]
                     [--embedding-device host|gpu] [--lm-head-dtype auto|fp8]
                     [--gpu-memory-utilization F] [--device-memory SIZE]
                     [--max-body-bytes N] [--max-connections N] [--tokenizer-threads N] [--stream-stall-ms N]
                     [--grammar-threads N] [--grammar-compile-timeout-ms N]
      --device-memory (e.g. 81089MiB) plans memory for that card instead of the GPU found; give what
      cudaMemGetInfo reports (H100 80GB: about 81089MiB, H200: 143156MiB), less than nvidia-smi's total.
      --embedding-device host (default) keeps the embedding table in host memory (same logits, 2.1 GB of
      the 70B's device memory to the KV cache); --lm-head-dtype fp8 halves lm_head (see the README).
      The node's credential (from the edge: POST /admin/nodes) comes from SEVENTY_NODE_CREDENTIAL.
      Without --model, serves a tiny random Llama 3.1 model created on first use in the cache folder.
      ORG/NAME is a Hugging Face Hub repo: served from the Hugging Face cache, downloaded into it when absent.
      --engine upstream --upstream URL fronts an OpenAI-compatible engine on this box (vLLM, SGLang,
      TensorRT-LLM, llama.cpp); its API key, if any, comes from SEVENTY_UPSTREAM_API_KEY.
  seventy-node download ORG/NAME [--revision R] [--max-workers 8]
      Fetches the files serving needs into the Hugging Face cache (HF_HUB_CACHE or HF_HOME/hub;
      HF_TOKEN for gated repos), resuming an interrupted download.
  seventy-node doctor [--model DIR|ORG/NAME] [--revision R] [--edge URL] [--host H] [--port P]
                      [--engine native|reference|upstream] [--quantization none|fp8] [--kv-cache-dtype auto|fp8]
                      [--embedding-device host|gpu] [--lm-head-dtype auto|fp8]
                      [--gpu-memory-utilization F] [--max-model-len N] [--max-num-seqs N]
      Checks this box before it serves (Node, GPUs, driver and CUDA, disk and GPU memory for the model,
      the port, the edge: reachable, the node's credential, clock) and prints a fix for every failed line.
      Exit code 0 only when every needed check passes.
  seventy-node make-tiny-model --out DIR [--seed N] [--quant awq|fp8]
      --quant awq writes an AutoAWQ GEMM 4-bit checkpoint, --quant fp8 a compressed-tensors FP8 one.`;

/** A user mistake: one line on stderr and exit code 2. */
class UsageError extends Error {}

function int(name: string, value: string | undefined, min = 1): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < min) throw new UsageError(`--${name} must be an integer >= ${min}, got '${value}'`);
  return Number(value);
}

const SIZE_UNITS: Record<string, number> = { "": 1, b: 1, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12, kib: 1024, mib: 1024 ** 2, gib: 1024 ** 3, tib: 1024 ** 4 };

/** "80GB", "81559MiB", "85520809984" → bytes. */
function byteSize(name: string, value: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(value.trim());
  const unit = m ? SIZE_UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined || !(Number(m[1]) > 0)) throw new UsageError(`--${name} must be a size such as 80GB, 141GB or 81559MiB, got '${value}'`);
  return Math.floor(Number(m[1]) * unit);
}

/** --embedding-device host|gpu and --lm-head-dtype auto|fp8 (native engine). */
function embeddingAndLmHead(values: { "embedding-device"?: string; "lm-head-dtype"?: string }): { embeddingDevice?: "host" | "gpu"; lmHeadDtype?: "auto" | "fp8" } {
  const embeddingDevice = values["embedding-device"];
  if (embeddingDevice !== undefined && embeddingDevice !== "host" && embeddingDevice !== "gpu") throw new UsageError(`--embedding-device must be host or gpu, got '${embeddingDevice}'`);
  const lmHeadDtype = values["lm-head-dtype"];
  if (lmHeadDtype !== undefined && lmHeadDtype !== "auto" && lmHeadDtype !== "fp8") throw new UsageError(`--lm-head-dtype must be auto or fp8, got '${lmHeadDtype}'`);
  return { embeddingDevice, lmHeadDtype };
}

/** The edge's shared secret never reaches a node: each node has its own credential. */
function refuseSharedSecret(): void {
  if (process.env.SEVENTY_NODE_SECRET) {
    throw new UsageError("SEVENTY_NODE_SECRET is no longer used: register the node with the edge (POST /admin/nodes) and set SEVENTY_NODE_CREDENTIAL");
  }
}

async function serveCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: SERVE_OPTIONS,
  });
  refuseSharedSecret();
  if (values.edge !== undefined && !/^https?:\/\//.test(values.edge)) throw new UsageError(`--edge must be an http(s) URL, got '${values.edge}'`);
  if (values.engine === "upstream") return serveUpstream(values);
  if (values.upstream !== undefined) throw new UsageError("--upstream needs --engine upstream");
  const engine = values.engine as EngineChoice;
  if (!ENGINE_CHOICES.includes(engine)) throw new UsageError(`--engine must be one of ${[...ENGINE_CHOICES, "upstream"].join(", ")}, got '${values.engine}'`);
  const quantization = values.quantization;
  if (quantization !== undefined && quantization !== "none" && quantization !== "fp8") throw new UsageError(`--quantization must be none or fp8, got '${quantization}'`);
  const kvCacheDtype = values["kv-cache-dtype"];
  if (kvCacheDtype !== undefined && kvCacheDtype !== "auto" && kvCacheDtype !== "fp8") throw new UsageError(`--kv-cache-dtype must be auto or fp8, got '${kvCacheDtype}'`);
  const { embeddingDevice, lmHeadDtype } = embeddingAndLmHead(values);
  const loadFormat = values["load-format"];
  if (loadFormat !== undefined && loadFormat !== "safetensors" && loadFormat !== "dummy") throw new UsageError(`--load-format must be safetensors or dummy, got '${loadFormat}'`);
  const gmu = values["gpu-memory-utilization"];
  if (gmu !== undefined && !(Number(gmu) > 0 && Number(gmu) <= 1)) throw new UsageError(`--gpu-memory-utilization must be in (0, 1], got '${gmu}'`);
  if (values.revision !== undefined && (values.model === undefined || !isRepoId(values.model))) throw new UsageError("--revision needs --model ORG/NAME");
  const resolved = values.model === undefined ? undefined : await resolveModel(values.model, { revision: values.revision, log: (line) => console.error(line) });
  const node = await startNode({
    modelDir: resolved?.dir,
    engine,
    host: values.host,
    port: int("port", values.port, 0),
    servedModelName: values["served-model-name"] ?? resolved?.repo,
    maxNumSeqs: int("max-num-seqs", values["max-num-seqs"]),
    maxNumBatchedTokens: int("max-num-batched-tokens", values["max-num-batched-tokens"]),
    kvCacheBlocks: int("kv-cache-blocks", values["kv-cache-blocks"]),
    maxModelLen: int("max-model-len", values["max-model-len"]),
    maxQueue: int("max-queue", values["max-queue"], 0),
    maxBodyBytes: int("max-body-bytes", values["max-body-bytes"]),
    maxConnections: int("max-connections", values["max-connections"]),
    tokenizerThreads: int("tokenizer-threads", values["tokenizer-threads"]),
    streamStallMs: int("stream-stall-ms", values["stream-stall-ms"], 100),
    grammarThreads: int("grammar-threads", values["grammar-threads"], 1),
    grammarCompileTimeoutMs: int("grammar-compile-timeout-ms", values["grammar-compile-timeout-ms"], 1),
    credential: process.env.SEVENTY_NODE_CREDENTIAL || undefined,
    edgeUrl: values.edge,
    nodeId: values["node-id"],
    publicUrl: values["public-url"],
    heartbeatIntervalMs: int("heartbeat-interval-ms", values["heartbeat-interval-ms"], 100),
    quantization,
    kvCacheDtype,
    embeddingDevice,
    lmHeadDtype,
    deviceMemoryBytes: values["device-memory"] === undefined ? undefined : byteSize("device-memory", values["device-memory"]),
    loadFormat,
    gpuMemoryUtilization: gmu === undefined ? undefined : Number(gmu),
    simulatedStepMs: int("simulated-step-ms", values["simulated-step-ms"], 0),
    progress: true,
    log: (line) => console.error(line),
  });
  console.log(`seventy gpu-node: model ${node.ctx.modelName}, engine ${node.ctx.engineKind}, max_model_len ${node.ctx.maxModelLen}`);
  console.log(`listening on ${node.url}`);
  drainOnSignals(() => node.drain());
}

async function serveUpstream(values: Record<string, string | undefined>): Promise<void> {
  const upstream = values.upstream;
  if (!upstream || !/^https?:\/\//.test(upstream)) throw new UsageError("--engine upstream needs --upstream URL (the engine's OpenAI-compatible server, e.g. http://127.0.0.1:8000)");
  for (const flag of ["model", "revision", "served-model-name", "kv-cache-blocks", "max-num-batched-tokens", "quantization", "kv-cache-dtype", "embedding-device", "lm-head-dtype", "device-memory", "load-format", "gpu-memory-utilization", "max-queue"]) {
    if (values[flag] !== undefined) throw new UsageError(`--${flag} is the engine's setting with --engine upstream; set it where you start the engine`);
  }
  for (const flag of ["tokenizer-threads", "stream-stall-ms", "grammar-threads", "grammar-compile-timeout-ms"]) {
    if (values[flag] !== undefined) throw new UsageError(`--${flag} does not apply to --engine upstream: the engine tokenizes and streams`);
  }
  const node = await startUpstreamNode({
    upstream,
    apiKey: process.env.SEVENTY_UPSTREAM_API_KEY || undefined,
    host: values.host,
    port: int("port", values.port, 0),
    maxNumSeqs: int("max-num-seqs", values["max-num-seqs"]),
    maxModelLen: int("max-model-len", values["max-model-len"]),
    maxBodyBytes: int("max-body-bytes", values["max-body-bytes"]),
    maxConnections: int("max-connections", values["max-connections"]),
    credential: process.env.SEVENTY_NODE_CREDENTIAL || undefined,
    edgeUrl: values.edge,
    nodeId: values["node-id"],
    publicUrl: values["public-url"],
    heartbeatIntervalMs: int("heartbeat-interval-ms", values["heartbeat-interval-ms"], 100),
    log: (line) => console.error(line),
  });
  console.log(`seventy gpu-node: model ${node.modelName}, engine upstream (${upstream}), max_model_len ${node.maxModelLen}`);
  console.log(`listening on ${node.url}`);
  drainOnSignals(() => node.drain());
}

/**
 * First Ctrl-C / SIGTERM drains (no new requests; running ones finish, up to a minute);
 * a second one stops at once.
 */
function drainOnSignals(drain: () => Promise<void>): void {
  let stopping = false;
  const stop = () => {
    if (stopping) process.exit(130);
    stopping = true;
    console.error("draining: finishing running requests (Ctrl-C again to stop now)");
    void drain().then(() => process.exit(0));
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

async function makeTinyModelCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, strict: true, options: MAKE_TINY_MODEL_OPTIONS });
  if (!values.out) throw new UsageError("make-tiny-model needs --out DIR");
  const quant = values.quant;
  if (quant !== undefined && quant !== "awq" && quant !== "fp8") throw new UsageError(`--quant must be awq or fp8, got '${quant}'`);
  const dir = await makeTinyModel({ outDir: values.out, seed: int("seed", values.seed, 0) ?? 0, quant });
  console.log(`wrote a tiny Llama 3.1${quant ? ` ${quant === "awq" ? "AWQ 4-bit" : "FP8"}` : ""} model to ${dir ?? values.out}`);
}

async function downloadCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: DOWNLOAD_OPTIONS,
  });
  const repo = positionals[0];
  if (positionals.length !== 1 || repo === undefined || !isRepoId(repo)) throw new UsageError("download needs one Hub repo id, e.g. seventy-node download nvidia/Llama-3.1-Nemotron-70B-Instruct-HF");
  const result = await downloadModel({ repo, revision: values.revision, maxWorkers: int("max-workers", values["max-workers"]) });
  console.log(formatDownloadResult(repo, result));
}

async function doctorCommand(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: DOCTOR_OPTIONS,
  });
  const q = values.quantization;
  if (q !== undefined && q !== "none" && q !== "fp8") throw new UsageError(`--quantization must be none or fp8, got '${q}'`);
  if (values.edge !== undefined && !/^https?:\/\//.test(values.edge)) throw new UsageError(`--edge must be an http(s) URL, got '${values.edge}'`);
  const gmu = values["gpu-memory-utilization"];
  if (gmu !== undefined && !(Number(gmu) > 0 && Number(gmu) <= 1)) throw new UsageError(`--gpu-memory-utilization must be in (0, 1], got '${gmu}'`);
  const kv = values["kv-cache-dtype"];
  if (kv !== undefined && kv !== "auto" && kv !== "fp8") throw new UsageError(`--kv-cache-dtype must be auto or fp8, got '${kv}'`);
  const { embeddingDevice, lmHeadDtype } = embeddingAndLmHead(values);
  const { ok, results } = await runDoctor(
    {
      model: values.model,
      revision: values.revision,
      edge: values.edge,
      credential: process.env.SEVENTY_NODE_CREDENTIAL || undefined,
      sharedSecretSet: Boolean(process.env.SEVENTY_NODE_SECRET),
      host: values.host,
      port: int("port", values.port, 0),
      engine: values.engine,
      quantization: q,
      kvCacheDtype: kv,
      embeddingDevice,
      lmHeadDtype,
      gpuMemoryUtilization: gmu === undefined ? undefined : Number(gmu),
      maxModelLen: int("max-model-len", values["max-model-len"]),
      maxNumSeqs: int("max-num-seqs", values["max-num-seqs"]),
    },
    systemFacts(),
  );
  console.log(formatDoctor(results));
  console.log(ok ? "all needed checks passed" : "some needed checks failed: see the fixes above");
  process.exitCode = ok ? 0 : 1;
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === "serve") return serveCommand(rest);
  if (command === "download") return downloadCommand(rest);
  if (command === "doctor") return doctorCommand(rest);
  if (command === "make-tiny-model") return makeTinyModelCommand(rest);
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    console.log(USAGE);
    if (command === undefined) process.exitCode = 2;
    return;
  }
  throw new UsageError(`unknown command '${command}'`);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  const e = err as Error & { code?: string };
  // Anything that stops the node from starting (a bad flag, model directory, port or host) is reported
  // as one line; SEVENTY_DEBUG=1 shows the stack.
  const message = (e.message ?? String(err)).split("\n")[0];
  console.error(`seventy-node: ${message}`);
  if (process.env.SEVENTY_DEBUG) console.error(e.stack);
  process.exit(2);
});
