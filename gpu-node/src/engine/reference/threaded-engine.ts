import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import type { LlamaConfig } from "../../model/types.js";
import type { Engine, StepBatch, StepResult } from "../types.js";
import type { ReferenceEngineOptions } from "./reference-engine.js";
import type { WorkerReply, WorkerRequest } from "./worker-thread.js";

/**
 * The reference engine on its own thread: the same math as ReferenceEngine, but a step (seconds
 * for a long prompt on a CPU) runs off the event loop, as the native engine's thread does. The
 * weights are transferred to the worker, not copied.
 */
export class ThreadedReferenceEngine implements Engine {
  readonly kind = "reference";
  private readonly pending = new Map<number, { resolve: (r: StepResult) => void; reject: (e: Error) => void }>();
  private nextId = 0;
  private closed = false;

  private constructor(
    private readonly worker: Worker,
    readonly blockSize: number,
    readonly numKvBlocks: number,
  ) {
    worker.on("message", (msg: WorkerReply) => {
      if (msg.type === "ready") return;
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.type === "result") p.resolve(msg.result);
      else p.reject(new Error(msg.message));
    });
    worker.on("error", (err) => this.failAll(err));
    worker.on("exit", () => this.failAll(new Error("the reference engine's thread exited")));
  }

  static async create(
    config: LlamaConfig,
    weights: Map<string, Float32Array>,
    opts: ReferenceEngineOptions,
  ): Promise<ThreadedReferenceEngine> {
    const worker = new Worker(workerUrl());
    const ready = new Promise<void>((resolve, reject) => {
      const onMessage = (msg: WorkerReply) => {
        if (msg.type === "ready") resolve();
        else if (msg.type === "error") reject(new Error(msg.message));
        else return;
        worker.off("message", onMessage);
      };
      worker.on("message", onMessage);
      worker.once("error", reject);
    });
    const entries = [...weights.entries()];
    const buffers = [...new Set(entries.map(([, w]) => w.buffer as ArrayBuffer))];
    worker.postMessage({ type: "init", config, weights: entries, opts } satisfies WorkerRequest, buffers);
    try {
      await ready;
    } catch (err) {
      await worker.terminate();
      throw err;
    }
    return new ThreadedReferenceEngine(worker, opts.blockSize ?? 16, opts.numKvBlocks);
  }

  async step(batch: StepBatch): Promise<StepResult> {
    if (this.closed) throw new Error("ReferenceEngine is closed");
    const id = this.nextId++;
    // Token masks are copied to the worker with the batch, so they must be complete first.
    if (batch.masksReady) await batch.masksReady;
    const { masksReady: _, ...plain } = batch;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: "step", id, batch: plain } satisfies WorkerRequest);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.failAll(new Error("ReferenceEngine is closed"));
    await this.worker.terminate();
  }

  private failAll(err: Error): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}

/** The compiled worker script (when running from TypeScript sources, the built copy in dist/). */
function workerUrl(): URL {
  const here = new URL("./worker-thread.js", import.meta.url);
  if (existsSync(fileURLToPath(here))) return here;
  const built = fileURLToPath(here).replace(/([\\/])src([\\/])(?!.*[\\/]src[\\/])/, "$1dist$2");
  if (!existsSync(built)) throw new Error(`the reference engine's worker script is not built (${built}): run npm run build`);
  return pathToFileURL(built);
}
