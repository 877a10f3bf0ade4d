import { createHash } from "node:crypto";
import type { CompiledGrammar, GrammarCompiler as XGrammarCompiler, TokenizerInfo } from "@mlc-ai/web-xgrammar";
import { checkJsonSchema, checkRepetitionBudget } from "./json-schema.js";
import { ConstraintError, type ConstraintSpec } from "./spec.js";
import { loadXGrammar, takeXGrammarError, type FastGrammarMatcher } from "./xgrammar.js";

export interface GrammarCompilerOptions {
  /** Compiled grammars kept (LRU). Default 256. */
  cacheSize?: number;
  /** A grammar whose compilation takes longer is refused (and remembered as refused). Default 10 s. */
  compileTimeoutMs?: number;
  /** Regex / grammar source length and choice count at most. */
  maxSourceBytes?: number;
  maxChoices?: number;
  /** Called with each compilation's duration (for /metrics). */
  onCompile?(seconds: number, kind: ConstraintSpec["kind"]): void;
}

/** The tokenizer facts the grammar engine needs: the byte-level vocabulary and the stop tokens. */
export interface GrammarVocab {
  /** Token strings in the tokenizer's byte-level alphabet, by id, padded to the logits size. Special tokens are "". */
  encodedVocab: string[];
  stopTokenIds: number[];
}

/**
 * Compiles constraint specs into grammars over the model's full vocabulary with xgrammar, and keeps
 * the most recently used ones by the hash of their spec. Compilation is synchronous WebAssembly on
 * the calling thread; size limits bound it up front, and a grammar that still compiles too slowly is
 * refused with a 400 (its hash is remembered so it is never compiled again).
 */
export class GrammarCompiler {
  readonly vocabSize: number;
  private readonly cache = new Map<string, CompiledGrammar>();
  private readonly refused = new Map<string, string>();
  private readonly cacheSize: number;
  private readonly compileTimeoutMs: number;
  private readonly maxSourceBytes: number;
  private readonly maxChoices: number;
  private numCompiles = 0;

  private constructor(
    private readonly info: TokenizerInfo,
    private readonly compiler: XGrammarCompiler,
    readonly stopTokenIds: number[],
    private readonly opts: GrammarCompilerOptions,
  ) {
    this.vocabSize = info.getVocabSize();
    this.cacheSize = opts.cacheSize ?? 256;
    this.compileTimeoutMs = opts.compileTimeoutMs ?? 10_000;
    this.maxSourceBytes = opts.maxSourceBytes ?? 64 * 1024;
    this.maxChoices = opts.maxChoices ?? 1024;
  }

  static async create(vocab: GrammarVocab, opts: GrammarCompilerOptions = {}): Promise<GrammarCompiler> {
    const xg = loadXGrammar();
    const info = await xg.TokenizerInfo.createTokenizerInfo(vocab.encodedVocab, "byte_level", false, vocab.encodedVocab.length, vocab.stopTokenIds);
    // xgrammar's own cache is keyed by grammar text and unbounded: ours is bounded.
    const compiler = await xg.GrammarCompiler.createGrammarCompiler(info, false);
    return new GrammarCompiler(info, compiler, vocab.stopTokenIds, opts);
  }

  get stats(): { cached: number; compiles: number } {
    return { cached: this.cache.size, compiles: this.numCompiles };
  }

  /**
   * The compiled grammar of `spec`, from the cache or compiled now.
   * @throws ConstraintError for an invalid or unsupported spec, or one too large or too slow to compile.
   */
  async compile(spec: ConstraintSpec, param: string): Promise<CompiledGrammar> {
    const prepared = this.prepare(spec, param);
    const key = createHash("sha256").update(prepared.kind).update("\0").update(prepared.source).digest("hex");
    const hit = this.cache.get(key);
    if (hit) {
      this.cache.delete(key);
      this.cache.set(key, hit);
      return hit;
    }
    const refusal = this.refused.get(key);
    if (refusal) throw new ConstraintError(refusal, param, "grammar_too_complex");
    const t0 = performance.now();
    takeXGrammarError();
    let compiled: CompiledGrammar;
    try {
      compiled = await prepared.compile(this.compiler);
    } catch (err) {
      const reason = takeXGrammarError() || errorText(err);
      throw new ConstraintError(`The ${describe(spec.kind)} could not be compiled: ${reason}`, param);
    }
    const ms = performance.now() - t0;
    this.numCompiles++;
    this.opts.onCompile?.(ms / 1000, spec.kind);
    if (ms > this.compileTimeoutMs) {
      compiled.dispose();
      const message = `The ${describe(spec.kind)} took ${Math.round(ms)} ms to compile; the limit is ${this.compileTimeoutMs} ms. Simplify it.`;
      if (this.refused.size >= this.cacheSize) this.refused.delete(this.refused.keys().next().value as string);
      this.refused.set(key, message);
      throw new ConstraintError(message, param, "grammar_too_complex");
    }
    this.cache.set(key, compiled);
    if (this.cache.size > this.cacheSize) {
      // Matchers hold their own reference to the grammar's data, so evicting does not break them.
      const oldest = this.cache.keys().next().value as string;
      this.cache.get(oldest)?.dispose();
      this.cache.delete(oldest);
    }
    return compiled;
  }

  /** A fresh matcher (one per sequence) that ends on the model's stop tokens. */
  async matcher(compiled: CompiledGrammar): Promise<FastGrammarMatcher> {
    return (await loadXGrammar().GrammarMatcher.createGrammarMatcher(compiled, this.stopTokenIds)) as FastGrammarMatcher;
  }

  private prepare(spec: ConstraintSpec, param: string): { kind: string; source: string; compile(c: XGrammarCompiler): Promise<CompiledGrammar> } {
    const limit = (what: string, text: string) => {
      if (Buffer.byteLength(text) > this.maxSourceBytes) {
        throw new ConstraintError(`The ${what} is ${Buffer.byteLength(text)} bytes; at most ${this.maxSourceBytes} are supported.`, param, "grammar_too_large");
      }
      return text;
    };
    switch (spec.kind) {
      case "json_object":
        return { kind: "json_object", source: "", compile: (c) => compileSchema(c, JSON.stringify({ type: "object" })) };
      case "json_schema": {
        const schema = JSON.stringify(checkJsonSchema(spec.schema, param));
        return { kind: "json_schema", source: schema, compile: (c) => compileSchema(c, schema) };
      }
      case "regex": {
        const pattern = limit("regular expression", spec.pattern);
        checkRepetitionBudget(pattern, param);
        try {
          new RegExp(pattern, "u");
        } catch (err) {
          throw new ConstraintError(`The regular expression is invalid: ${(err as Error).message}`, param);
        }
        const tag = JSON.stringify({ type: "structural_tag", format: { type: "regex", pattern } });
        return { kind: "regex", source: pattern, compile: (c) => c.compileStructuralTag(tag) };
      }
      case "choice": {
        if (spec.choices.length === 0) throw new ConstraintError("choice needs at least one string.", param);
        if (spec.choices.length > this.maxChoices) throw new ConstraintError(`choice has ${spec.choices.length} strings; at most ${this.maxChoices} are supported.`, param, "grammar_too_large");
        const source = limit("choice list", JSON.stringify(spec.choices));
        const tag = JSON.stringify({
          type: "structural_tag",
          format: { type: "or", elements: spec.choices.map((value) => ({ type: "const_string", value })) },
        });
        return { kind: "choice", source, compile: (c) => c.compileStructuralTag(tag) };
      }
      case "grammar": {
        const grammar = limit("grammar", spec.grammar);
        checkRepetitionBudget(grammar, param);
        return { kind: "grammar", source: grammar, compile: (c) => c.compileGrammar(grammar) };
      }
      case "tool_call": {
        if (spec.tools.length === 0) throw new ConstraintError("No tool can be called.", param);
        // One object per tool: the name pinned, the arguments valid for that tool's schema; the key
        // order (name, then parameters) is fixed, so a stream can name the tool before its arguments.
        const calls = spec.tools.map((t, i) => ({
          type: "object",
          properties: {
            name: { const: t.name },
            parameters: checkJsonSchema(t.parameters ?? { type: "object" }, `tools[${i}].function.parameters`),
          },
          required: ["name", "parameters"],
        }));
        const schema = limit("tool schema", JSON.stringify(calls.length === 1 ? calls[0] : { anyOf: calls }));
        return { kind: "tool_call", source: schema, compile: (c) => compileSchema(c, schema) };
      }
    }
  }
}

/**
 * A JSON schema's grammar: xgrammar's converter (no free whitespace, one line, `", "` and `": "`
 * separators, no properties beyond the schema's), with one repair. Its length-bounded strings use
 * the character class `[^"\\\r\n]`, which admits raw control characters (a tab, say) that JSON
 * forbids inside strings; they get the class of its unbounded strings, which excludes \0–\x1f.
 */
async function compileSchema(c: XGrammarCompiler, schema: string): Promise<CompiledGrammar> {
  const ebnf = await loadXGrammar().Testings._jsonSchemaToEBNF(schema, false, -1);
  return c.compileGrammar(ebnf.replaceAll(LOOSE_STRING_CHAR, STRICT_STRING_CHAR));
}
const LOOSE_STRING_CHAR = String.raw`[^"\\\r\n]`;
const STRICT_STRING_CHAR = String.raw`[^\0-\x1f\"\\\r\n]`;

function describe(kind: ConstraintSpec["kind"]): string {
  return kind === "json_object" || kind === "json_schema" ? "JSON schema" : kind === "tool_call" ? "tool schema" : kind === "choice" ? "choice list" : kind;
}

function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
