import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { AddressInfo } from "node:net";
import { serve, type ServerType } from "@hono/node-server";
import { createEngine, type EngineChoice } from "./engine-factory.js";
import type { Engine } from "./engine/types.js";
import { ensureTinyModel, openModelDir, createProgressBar } from "./model/index.js";
import { Scheduler } from "./scheduler/index.js";
import { createApp } from "./server/app.js";
import type { NodeContext } from "./server/context.js";
import { ByteLevelDetokenizer, GenericDetokenizer, TokenByteTable } from "./server/detokenizer.js";
import { startHeartbeat } from "./server/heartbeat.js";
import { NodeMetrics } from "./server/metrics.js";

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
  maxBodyBytes?: number;
  /** Native engine: FP8 weights converted at load, synthetic weights, share of free GPU memory to use. */
  quantization?: "none" | "fp8";
  /** "fp8": an e4m3 KV cache (half the bytes per token). */
  kvCacheDtype?: "auto" | "fp8";
  loadFormat?: "safetensors" | "dummy";
  gpuMemoryUtilization?: number;
  /** Native engine: plan (and check) memory for a device of this many bytes instead of the GPU found. */
  deviceMemoryBytes?: number;
  /** Shared with the edge; required to listen on anything but loopback. */
  secret?: string;
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

export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export async function startNode(opts: NodeOptions = {}): Promise<RunningNode> {
  const log = opts.log ?? ((line: string) => console.log(line));
  const host = opts.host ?? "127.0.0.1";
  if (!opts.secret && !isLoopback(host)) {
    throw new Error(`refusing to listen on ${host} without SEVENTY_NODE_SECRET: unsigned requests are served on loopback only`);
  }
  if (opts.edgeUrl && !opts.secret) throw new Error("--edge needs SEVENTY_NODE_SECRET (heartbeats and requests are signed)");

  const modelPath = opts.modelDir ?? (await ensureTinyModel({ log }));
  const model = await openModelDir(modelPath);
  const modelName = opts.servedModelName ?? model.modelName;

  const blockSize = opts.blockSize ?? 16;
  const engine =
    opts.engineInstance ??
    (await createEngine(opts.engine ?? "reference", model, {
      blockSize,
      numKvBlocks: opts.kvCacheBlocks,
      onProgress: opts.progress ? progressReporter() : undefined,
      log,
      quantization: opts.quantization,
      kvCacheDtype: opts.kvCacheDtype,
      loadFormat: opts.loadFormat,
      gpuMemoryUtilization: opts.gpuMemoryUtilization,
      deviceMemoryBytes: opts.deviceMemoryBytes,
      maxNumSeqs: opts.maxNumSeqs,
      maxNumBatchedTokens: opts.maxNumBatchedTokens,
      maxModelLen: opts.maxModelLen,
    }));
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
    tokenTable: table,
    makeDetokenizer: table
      ? () => new ByteLevelDetokenizer(table)
      : () => new GenericDetokenizer((ids) => tokenizer.decode(ids, { skipSpecialTokens: true })),
    scheduler,
    metrics: new NodeMetrics(modelName),
    secret: opts.secret,
    maxBodyBytes: opts.maxBodyBytes ?? 8 * 1024 * 1024,
    draining: false,
    startedAt: Date.now(),
    memoryPlan: engine.memoryPlan ?? null,
  };

  const app = createApp(ctx);
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: host, port: opts.port ?? 8100 }, () => resolve(s));
    s.once("error", reject);
  });
  const port = (server.address() as AddressInfo).port;
  const url = `http://${host.includes(":") ? `[${host}]` : host}:${port}`;

  const heartbeat = opts.edgeUrl
    ? startHeartbeat({
        edgeUrl: opts.edgeUrl,
        secret: opts.secret!,
        intervalMs: opts.heartbeatIntervalMs ?? 2000,
        onError: (m) => log(`[gpu-node] ${m}`),
        report: () => {
          const s = scheduler.stats();
          return {
            node_id: opts.nodeId ?? `node-${port}`,
            url: opts.publicUrl ?? url,
            models: [modelName],
            engine: engine.kind,
            capacity: { max_num_seqs: opts.maxNumSeqs ?? 256, kv_blocks_total: s.kvBlocksTotal, max_model_len: maxModelLen },
            load: { running: s.numRunning, waiting: s.numWaiting, kv_usage: s.kvUsage },
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
