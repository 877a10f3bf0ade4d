import { parentPort, workerData } from "node:worker_threads";
import { ChatTemplateError } from "./errors.js";
import { LlamaTokenizer } from "./tokenizer.js";

/**
 * The worker side of TokenizerPool: one LlamaTokenizer of the model directory, encoding one prompt
 * at a time, so rendering a chat template or tokenizing a large prompt never blocks the node's
 * event loop (HTTP, heartbeats and /health keep answering).
 */
export type TokenizeTask =
  | { id: number; kind: "text"; text: string; addSpecialTokens: boolean }
  | { id: number; kind: "chat"; messages: unknown[]; addGenerationPrompt: boolean; tools?: unknown[] };

export type TokenizeReply =
  | { type: "ready" }
  | { type: "init-error"; message: string }
  | { id: number; type: "ids"; ids: Uint32Array }
  | { id: number; type: "error"; message: string; template: boolean };

const port = parentPort!;
try {
  const tok = await LlamaTokenizer.fromDir((workerData as { modelDir: string }).modelDir);
  port.on("message", (task: TokenizeTask) => {
    try {
      const list =
        task.kind === "text"
          ? tok.encode(task.text, { addSpecialTokens: task.addSpecialTokens })
          : tok.encodeChat(task.messages, { addGenerationPrompt: task.addGenerationPrompt, tools: task.tools });
      const ids = Uint32Array.from(list);
      port.postMessage({ id: task.id, type: "ids", ids } satisfies TokenizeReply, [ids.buffer]);
    } catch (err) {
      const e = err as Error;
      port.postMessage({ id: task.id, type: "error", message: e.message, template: e instanceof ChatTemplateError } satisfies TokenizeReply);
    }
  });
  port.postMessage({ type: "ready" } satisfies TokenizeReply);
} catch (err) {
  port.postMessage({ type: "init-error", message: (err as Error).message } satisfies TokenizeReply);
}
