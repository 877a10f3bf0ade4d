import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import { nodeUrlProblem, parseNodeCredential, type NodeCredential } from "@seventy/sdk/protocol";
import { createEngine, type EngineChoice } from "./engine-factory.js";
import type { Engine } from "./engine/types.js";
import { ensureTinyModel, openModelDir, createProgressBar } from "./model/index.js";
import { Scheduler } from "./scheduler/index.js";
import { createApp } from "./server/app.js";
import type { NodeContext } from "./server/context.js";
import { ByteLevelDetokenizer, GenericDetokenizer, TokenByteTable } from "./server/detokenizer.js";
import { startHeartbeat } from "./server/heartbeat.js";
import { signableFrom } from "./server/signature.js";
import { NodeMetrics } from "./server/metrics.js";
import { DEFAULT_REQUEST_LIMITS, type RequestLimits } from "./server/request-limits.js";
import { TokenizerPool } from "./model/tokenizer-pool.js";
import { ConstrainedEngine, StructuredOutputs, grammarVocabFromTokenizerJson } from "./structured/index.js";

export interface NodeOptions {
  /** Hugging Face model directory; default: the tiny random model, created on first use. */
  modelDir?: string;
  engine?: EngineChoice;
  /** An engine built by the caller (benchmarks and tests use a simulated one); overrides `engine`. */
  engineInstance?: Engine;
  host?: string;
  port?: number;
  servedModelName?: string;
  maxNumSeqs?: number;
  maxNumBatchedTokens?: number;
  kvCacheBlocks?: number;
  blockSize?: number;
  maxModelLen?: number;
  maxQueue?: number;
  /** Request body limit; default: the edge's (1 MiB) plus room for the fields the edge adds. */
  maxBodyBytes?: number;
  /** Open client connections at most; more are closed at once. Default maxNumSeqs + maxQueue + 64. */
  maxConnections?: number;
  /** Threads rendering and tokenizing large prompts (default 2), and the time one prompt may take (default 10 s). */
  tokenizerThreads?: number;
  tokenizeTimeoutMs?: number;
  /**
   * Constrained decoding: threads compiling grammars and computing their masks (default 8, each
   * ~100 MB at 128k tokens), and how long one grammar may take to compile before the request is
   * refused with a 400 (default 10 s).
   */
  grammarThreads?: number;
  grammarCompileTimeoutMs?: number;
  /** A stream whose client stops reading is paused; cancelled (KV freed) after this long behind. Default 30 s. */
  streamStallMs?: number;
  /** Overrides of the per-request caps (tests use small ones). */
  limits?: Partial<RequestLimits>;
  /** Native engine: FP8 weights converted at load, synthetic weights, share of free GPU memory to use. */
  quantization?: "none" | "fp8";
  /** "fp8": an e4m3 KV cache (half the bytes per token). */
  kvCacheDtype?: "auto" | "fp8";
  /** Native engine: where the embedding table lives (default host) and lm_head's dtype (default auto: bf16). */
  embeddingDevice?: "host" | "gpu";
  lmHeadDtype?: "auto" | "fp8";
  loadFormat?: "safetensors" | "dummy";
  gpuMemoryUtilization?: number;
  /** Native engine: plan (and check) memory for a device of this many bytes instead of the GPU found. */
  deviceMemoryBytes?: number;
  /** Simulated engine: wall time of one step. */
  simulatedStepMs?: number;
  /**
   * This node's credential from the edge's admin API (`snc1.…`, SEVENTY_NODE_CREDENTIAL): its id and
   * its keys. Required to listen on anything but loopback and to join an edge.
   */
  credential?: string;
  edgeUrl?: string;
  nodeId?: string;
  publicUrl?: string;
  heartbeatIntervalMs?: number;
  /** Show a progress bar while loading weights (the CLI does). */
  progress?: boolean;
  log?: (line: string) => void;
}

export interface RunningNode {
  url: string;
  port: number;
  ctx: NodeContext;
  /**
   * Graceful stop: refuse new requests (503, and the edge is told at once so it routes elsewhere),
   * let running and queued requests finish, then close. Requests still running after `graceMs` are
   * aborted.
   */
  drain(graceMs?: number): Promise<void>;
  close(): Promise<void>;
}

/** The model card's output cap. */
const MAX_OUTPUT_TOKENS = 4096;
/** The edge's MAX_BODY_BYTES default, plus room for what the edge adds to a body (stream_options). */
export const DEFAULT_MAX_BODY_BYTES = (1 << 20) + 4096;

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** Where and as whom a node listens and joins the edge: what every kind of node checks before it starts. */
export interface NodeIdentityOptions {
  host: string;
  /** `snc1.…` from SEVENTY_NODE_CREDENTIAL. */
  credential?: string;
  edgeUrl?: string;
  nodeId?: string;
  publicUrl?: string;
}

/**
 * The node's parsed credential (undefined in loopback mode), after the checks every node makes
 * before it starts: a well-formed credential whose id matches --node-id; loopback only without
 * one; --edge only with one; a --public-url the edge would accept.
 */
export function nodeCredential(opts: NodeIdentityOptions): NodeCredential | undefined {
  let credential: NodeCredential | undefined;
  if (opts.credential !== undefined) {
    credential = parseNodeCredential(opts.credential) ?? undefined;
    if (!credential) throw new Error("SEVENTY_NODE_CREDENTIAL is not a node credential (expected snc1.<node id>.<key>.<key> from POST /admin/nodes)");
    if (opts.nodeId !== undefined && opts.nodeId !== credential.nodeId) {
      throw new Error(`--node-id ${opts.nodeId} does not match the credential's node id ${credential.nodeId}`);
    }
  }
  if (!credential && !isLoopback(opts.host)) {
    throw new Error(`refusing to listen on ${opts.host} without SEVENTY_NODE_CREDENTIAL: unsigned requests are served on loopback only`);
  }
  if (opts.edgeUrl && !credential) throw new Error("--edge needs SEVENTY_NODE_CREDENTIAL (heartbeats and requests are signed with it)");
  if (opts.edgeUrl && !opts.publicUrl && !isLoopback(opts.host)) {
    throw new Error(`--public-url is required with --edge when listening on ${opts.host}: the edge must be told the URL it can reach`);
  }
  if (opts.publicUrl !== undefined) {
    const problem = nodeUrlProblem(opts.publicUrl, true);
    if (problem) throw new Error(`--public-url ${problem}`);
  }
  return credential;
}

/**
 * Signed requests must be newer than the node's start (see SignatureVerifier): a node waits for the
 * next whole second after it started before announcing itself, so nothing valid is ever refused
 * for that reason.
 */
export async function untilSignable(startedAtMs: number): Promise<void> {
  const wait = signableFrom(startedAtMs) * 1000 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait + 5));
}

export async function startNode(opts: NodeOptions = {}): Promise<RunningNode> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const host = opts.host ?? "127.0.0.1";
  const credential = nodeCredential({ ...opts, host });

  const modelPath = opts.modelDir ?? (await ensureTinyModel({ log }));
  const model = await openModelDir(modelPath);
  const modelName = opts.servedModelName ?? model.modelName;

  const blockSize = opts.blockSize ?? 16;
  const baseEngine =
    opts.engineInstance ??
    (await createEngine(opts.engine ?? "reference", model, {
      blockSize,
      numKvBlocks: opts.kvCacheBlocks,
      onProgress: opts.progress ? progressReporter() : undefined,
      log,
      quantization: opts.quantization,
      kvCacheDtype: opts.kvCacheDtype,
      embeddingDevice: opts.embeddingDevice,
      lmHeadDtype: opts.lmHeadDtype,
      loadFormat: opts.loadFormat,
      gpuMemoryUtilization: opts.gpuMemoryUtilization,
      deviceMemoryBytes: opts.deviceMemoryBytes,
      maxNumSeqs: opts.maxNumSeqs,
      maxNumBatchedTokens: opts.maxNumBatchedTokens,
      maxModelLen: opts.maxModelLen,
      simulatedStepMs: opts.simulatedStepMs,
    }));
  // Every engine samples under token masks for constrained requests (structured outputs, forced tool calls).
  const engine = new ConstrainedEngine(baseEngine, model.config.vocabSize);
  const kvCapacity = engine.numKvBlocks * engine.blockSize;
  const maxModelLen = opts.maxModelLen ?? Math.min(model.config.maxPositionEmbeddings, kvCapacity);
  if (maxModelLen > model.config.maxPositionEmbeddings) {
    throw new Error(`--max-model-len ${maxModelLen} exceeds the model's max_position_embeddings ${model.config.maxPositionEmbeddings}`);
  }
  if (maxModelLen > kvCapacity) {
    throw new Error(`--max-model-len ${maxModelLen} does not fit the KV cache (${engine.numKvBlocks} blocks × ${engine.blockSize} = ${kvCapacity} tokens); raise --kv-cache-blocks`);
  }

  const scheduler = new Scheduler(engine, {
    maxNumSeqs: opts.maxNumSeqs,
    maxNumBatchedTokens: opts.maxNumBatchedTokens,
    maxQueue: opts.maxQueue,
  });

  const tokenizerJson = JSON.parse(await readFile(join(modelPath, "tokenizer.json"), "utf8"));
  const table = TokenByteTable.fromTokenizerJson(tokenizerJson);
  const metrics = new NodeMetrics(modelName);
  scheduler.onStepHostTime = (t) => {
    metrics.stepHostSeconds.observe({ part: "schedule" }, t.scheduleMs / 1000);
    metrics.stepHostSeconds.observe({ part: "handoff" }, t.updateMs / 1000);
    if (t.engineMs > 0) metrics.stepHostSeconds.observe({ part: "engine" }, t.engineMs / 1000);
  };
  // Constrained decoding needs the byte-level vocabulary; other tokenizers serve free text only.
  const structured = table
    ? await StructuredOutputs.create(grammarVocabFromTokenizerJson(tokenizerJson, model.config.vocabSize, model.generation.eosTokenIds), {
        threads: opts.grammarThreads,
        compileTimeoutMs: opts.grammarCompileTimeoutMs,
        onCompile: (seconds, kind) => metrics.grammarCompileSeconds.observe({ kind }, seconds),
        onMaskTime: (seconds) => metrics.grammarMaskSeconds.observe(seconds),
      })
    : null;
  const tokenizer = model.tokenizer;
  const ctx: NodeContext = {
    modelName,
    engineKind: engine.kind,
    maxModelLen,
    maxOutputTokens: MAX_OUTPUT_TOKENS,
    vocabSize: model.config.vocabSize,
    eosTokenIds: model.generation.eosTokenIds,
    samplingDefaults: {
      temperature: model.generation.temperature,
      topP: model.generation.topP,
      topK: model.generation.topK,
      repetitionPenalty: model.generation.repetitionPenalty,
    },
    tokenizer,
    tokenizerPool: new TokenizerPool(modelPath, { threads: opts.tokenizerThreads ?? 2, timeoutMs: opts.tokenizeTimeoutMs ?? 10_000 }),
    limits: { ...DEFAULT_REQUEST_LIMITS, ...opts.limits },
    streamBounds: { stallMs: opts.streamStallMs ?? 30_000, maxBufferedBytes: 1 << 20 },
    tokenTable: table,
    makeDetokenizer: table
      ? () => new ByteLevelDetokenizer(table)
      : () => new GenericDetokenizer((ids) => tokenizer.decode(ids, { skipSpecialTokens: true })),
    scheduler,
    metrics,
    structured,
    credential,
    maxBodyBytes: opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
    draining: false,
    startedAt: Date.now(),
    memoryPlan: engine.memoryPlan ?? null,
  };

  const app = createApp(ctx);
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: opts.port ?? 8100 }, () => resolve(s));
    s.once("error", reject);
  });
  // Bounded connections, and bounded time to send a request: a slow or half-sent request cannot
  // hold a socket (and its buffered body) for long.
  const http = server as import("node:http").Server;
  http.maxConnections = opts.maxConnections ?? scheduler.maxNumSeqs + scheduler.maxQueue + 64;
  http.headersTimeout = 10_000;
  http.requestTimeout = 30_000;
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;
  if (credential) await untilSignable(ctx.startedAt);

  const heartbeat = opts.edgeUrl
    ? startHeartbeat({
        edgeUrl: opts.edgeUrl,
        credential: credential!,
        intervalMs: opts.heartbeatIntervalMs ?? 2000,
        onError: (m) => log(`[gpu-node] ${m}`),
        report: () => {
          const s = scheduler.stats();
          return {
            node_id: credential!.nodeId,
            url: opts.publicUrl ?? url,
            models: [modelName],
            engine: engine.kind,
            capacity: { max_num_seqs: opts.maxNumSeqs ?? 256, kv_blocks_total: s.kvBlocksTotal, max_model_len: maxModelLen },
            load: { running: s.numRunning, waiting: s.numWaiting, kv_usage: s.kvUsage, prefix_cache_hit_rate: s.prefixCacheHitRate },
            draining: ctx.draining,
          };
        },
      })
    : null;

  let closed = false;
  const running: RunningNode = {
    url,
    port,
    ctx,
    async drain(graceMs = 60_000) {
      ctx.draining = true;
      await heartbeat?.beat();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([scheduler.idle(), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      await running.close();
    },
    async close() {
      if (closed) return;
      closed = true;
      heartbeat?.stop();
      await scheduler.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Streams that are still open would keep close() waiting; they were aborted above.
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await ctx.tokenizerPool?.close();
      await ctx.structured?.close();
      await engine.close();
    },
  };
  return running;
}

function progressReporter() {
  let bar: ReturnType<typeof createProgressBar> | null = null;
  return (p: { bytesDone: number; bytesTotal: number; file: string }) => {
    bar ??= createProgressBar({ label: "loading weights", total: p.bytesTotal });
    bar.update(p.bytesDone, p.file);
    if (p.bytesDone >= p.bytesTotal) {
      bar.done();
      bar = null;
    }
  };
}
