import { GrammarCompiler, type GrammarCompilerOptions, type GrammarVocab } from "./grammar-compiler.js";
import type { GrammarConstraint } from "./grammar-constraint.js";
import type { ConstraintSpec } from "./spec.js";

/**
 * The node's constrained-decoding service: compiles (and caches) grammars on worker threads and
 * hands out one matcher per sequence.
 *
 * @example
 * const so = await StructuredOutputs.create(grammarVocabFromTokenizerJson(json, 128256, eosIds));
 * const [c] = await so.constraints({ kind: "json_object" }, "response_format", 1);
 * scheduler.add({ ...request, constraint: c }, onEvent); // then c.dispose() when it finishes
 */
export class StructuredOutputs {
  private constructor(readonly compiler: GrammarCompiler) {}

  static async create(vocab: GrammarVocab, opts: GrammarCompilerOptions = {}): Promise<StructuredOutputs> {
    return new StructuredOutputs(await GrammarCompiler.create(vocab, opts));
  }

  /** `n` fresh constraints for `spec` (one per choice). @throws ConstraintError */
  constraints(spec: ConstraintSpec, param: string, n: number): Promise<GrammarConstraint[]> {
    return this.compiler.constraints(spec, param, n);
  }

  /** Stops the grammar threads. */
  close(): Promise<void> {
    return this.compiler.close();
  }
}

interface TokenizerJsonLike {
  model?: { vocab?: Record<string, number> };
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>;
}

/**
 * The grammar engine's view of a byte-level BPE tokenizer: every token as its byte-level string
 * (the engine decodes them to bytes itself, so partial UTF-8 tokens are exact), padded to the
 * logits size. Special tokens are "" so no grammar can produce them; the stop tokens end a match.
 */
export function grammarVocabFromTokenizerJson(json: TokenizerJsonLike, vocabSize: number, stopTokenIds: number[]): GrammarVocab {
  const encodedVocab = new Array<string>(vocabSize).fill("");
  for (const [token, id] of Object.entries(json.model?.vocab ?? {})) if (id < vocabSize) encodedVocab[id] = token;
  for (const t of json.added_tokens ?? []) if (t.id < vocabSize) encodedVocab[t.id] = t.special === false ? t.content : "";
  return { encodedVocab, stopTokenIds };
}
