import { parentPort } from "node:worker_threads";
import type { LlamaConfig } from "../../model/types.js";
import type { StepBatch } from "../types.js";
import { ReferenceEngine, type ReferenceEngineOptions } from "./reference-engine.js";

/**
 * The worker side of ThreadedReferenceEngine: owns one ReferenceEngine (its weights and KV cache)
 * and runs each step it is sent, so a long CPU step never blocks the node's event loop (HTTP,
 * heartbeats, /health keep answering).
 */
export type WorkerRequest =
  | { type: "init"; config: LlamaConfig; weights: Array<[string, Float32Array]>; opts: ReferenceEngineOptions }
  | { type: "step"; id: number; batch: StepBatch }
  | { type: "close" };

export type WorkerReply =
  | { type: "ready" }
  | { type: "result"; id: number; result: import("../types.js").StepResult }
  | { type: "error"; id: number; message: string };

let engine: ReferenceEngine | null = null;

parentPort?.on("message", (msg: WorkerRequest) => {
  const port = parentPort!;
  switch (msg.type) {
    case "init":
      try {
        engine = new ReferenceEngine(msg.config, new Map(msg.weights), msg.opts);
        port.postMessage({ type: "ready" } satisfies WorkerReply);
      } catch (err) {
        port.postMessage({ type: "error", id: -1, message: (err as Error).message } satisfies WorkerReply);
      }
      return;
    case "step":
      try {
        if (!engine) throw new Error("ReferenceEngine is not initialised");
        const result = engine.stepSync(msg.batch);
        const transfer = result.sampled.flatMap((s) => (s.logits ? [s.logits.buffer as ArrayBuffer] : []));
        port.postMessage({ type: "result", id: msg.id, result } satisfies WorkerReply, transfer);
      } catch (err) {
        port.postMessage({ type: "error", id: msg.id, message: (err as Error).message } satisfies WorkerReply);
      }
      return;
    case "close":
      void engine?.close();
      engine = null;
      port.close();
      return;
  }
});
