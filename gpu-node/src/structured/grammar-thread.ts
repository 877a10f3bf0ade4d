import { parentPort, workerData } from "node:worker_threads";
import type { CompiledGrammar } from "@mlc-ai/web-xgrammar";
import { loadXGrammar, takeXGrammarError, type FastGrammarMatcher } from "./xgrammar.js";

/**
 * The worker side of GrammarThreads: one xgrammar instance (the vocabulary preprocessed once), the
 * grammars compiled here, and the matchers of the sequences that use them. xgrammar's compiled
 * grammars cannot leave the WebAssembly instance that made them (this build has no serialization),
 * so a grammar is matched on the thread that compiled it; the main thread only sees masks.
 */
export interface GrammarThreadData {
  encodedVocab: string[];
  stopTokenIds: number[];
}

/** How a grammar is built from its source text. */
export type GrammarMethod = "ebnf" | "json_schema" | "structural_tag";

export type GrammarTask =
  | { t: "compile"; id: number; key: string; method: GrammarMethod; text: string }
  | { t: "drop"; key: string }
  | { t: "matcher"; id: number; key: string; mid: number; mask: Int32Array }
  | { t: "dispose"; mid: number }
  /** For each matcher: accept the tokens sampled since its last mask, then write its next mask. */
  | { t: "fill"; id: number; mids: Int32Array; accepts: number[][] };

export type GrammarReply =
  | { t: "ready" }
  | { t: "init-error"; message: string }
  | { id: number; t: "compiled"; ms: number }
  | { id: number; t: "ok" }
  | { id: number; t: "error"; message: string }
  /** Microseconds per mask; the first token a grammar rejected, if any. */
  | { id: number; t: "filled"; us: Float64Array; rejected: { mid: number; token: number } | null };

const port = parentPort!;
const { encodedVocab, stopTokenIds } = workerData as GrammarThreadData;

/**
 * A JSON schema's grammar: xgrammar's converter (no free whitespace, one line, `", "` and `": "`
 * separators, no properties beyond the schema's), with one repair. Its length-bounded strings use
 * the character class `[^"\\\r\n]`, which admits raw control characters (a tab, say) that JSON
 * forbids inside strings; they get the class of its unbounded strings, which excludes \0–\x1f.
 */
const LOOSE_STRING_CHAR = String.raw`[^"\\\r\n]`;
const STRICT_STRING_CHAR = String.raw`[^\0-\x1f\"\\\r\n]`;

interface Matcher {
  m: FastGrammarMatcher;
  mask: Int32Array;
}

try {
  const xg = loadXGrammar();
  const info = await xg.TokenizerInfo.createTokenizerInfo(encodedVocab, "byte_level", false, encodedVocab.length, stopTokenIds);
  // xgrammar's own cache is keyed by grammar text and unbounded; the main thread keeps a bounded one.
  const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, false);
  const grammars = new Map<string, CompiledGrammar>();
  const matchers = new Map<number, Matcher>();

  const stopOnly = (mask: Int32Array) => {
    mask.fill(0);
    for (const id of stopTokenIds) mask[id >> 5] = (mask[id >> 5] ?? 0) | (1 << (id & 31));
  };

  const compile = async (method: GrammarMethod, text: string): Promise<CompiledGrammar> => {
    switch (method) {
      case "ebnf":
        return compiler.compileGrammar(text);
      case "structural_tag":
        return compiler.compileStructuralTag(text);
      case "json_schema": {
        const ebnf = await xg.Testings._jsonSchemaToEBNF(text, false, -1);
        return compiler.compileGrammar(ebnf.replaceAll(LOOSE_STRING_CHAR, STRICT_STRING_CHAR));
      }
    }
  };

  const handle = async (task: GrammarTask): Promise<void> => {
    switch (task.t) {
      case "compile": {
        const t0 = performance.now();
        takeXGrammarError();
        try {
          const g = await compile(task.method, task.text);
          grammars.get(task.key)?.dispose();
          grammars.set(task.key, g);
          port.postMessage({ id: task.id, t: "compiled", ms: performance.now() - t0 } satisfies GrammarReply);
        } catch (err) {
          const message = takeXGrammarError() || (err instanceof Error ? err.message : String(err));
          port.postMessage({ id: task.id, t: "error", message } satisfies GrammarReply);
        }
        return;
      }
      case "drop":
        // Matchers keep their own reference to the grammar's data, so dropping does not break them.
        grammars.get(task.key)?.dispose();
        grammars.delete(task.key);
        return;
      case "matcher": {
        const g = grammars.get(task.key);
        if (!g) {
          port.postMessage({ id: task.id, t: "error", message: "the grammar is no longer cached" } satisfies GrammarReply);
          return;
        }
        const m = (await xg.GrammarMatcher.createGrammarMatcher(g, stopTokenIds)) as FastGrammarMatcher;
        matchers.set(task.mid, { m, mask: task.mask });
        port.postMessage({ id: task.id, t: "ok" } satisfies GrammarReply);
        return;
      }
      case "dispose":
        matchers.get(task.mid)?.m.dispose();
        matchers.delete(task.mid);
        return;
      case "fill": {
        const us = new Float64Array(task.mids.length);
        let rejected: { mid: number; token: number } | null = null;
        for (let i = 0; i < task.mids.length; i++) {
          const mid = task.mids[i]!;
          const entry = matchers.get(mid);
          if (!entry) continue; // disposed meanwhile: its sequence has ended
          const t0 = performance.now();
          for (const token of task.accepts[i]!) {
            const ok = entry.m.isTerminated() ? stopTokenIds.includes(token) : entry.m.acceptToken(token);
            if (!ok) rejected ??= { mid, token };
          }
          // Finished (or past its stop token with ignore_eos): only a stop token may follow.
          if (entry.m.isTerminated()) stopOnly(entry.mask);
          else entry.m.fillNextTokenBitmask(entry.mask);
          us[i] = (performance.now() - t0) * 1000;
        }
        port.postMessage({ id: task.id, t: "filled", us, rejected } satisfies GrammarReply);
        return;
      }
    }
  };
  // One task at a time, in arrival order (the package's methods are async in name only, but a
  // matcher must never be created or filled halfway through another task).
  let queue = Promise.resolve();
  port.on("message", (task: GrammarTask) => {
    queue = queue.then(() => handle(task)).catch((err: unknown) => {
      const message = err instanceof Error ? err.message : String(err);
      if ("id" in task) port.postMessage({ id: task.id, t: "error", message } satisfies GrammarReply);
    });
  });
  port.postMessage({ t: "ready" } satisfies GrammarReply);
} catch (err) {
  port.postMessage({ t: "init-error", message: (err as Error).message } satisfies GrammarReply);
}
