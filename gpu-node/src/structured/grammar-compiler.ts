import { createHash } from "node:crypto";
import { GrammarConstraint } from "./grammar-constraint.js";
import { CompileTimeoutError, GrammarSyntaxError, GrammarThread } from "./grammar-thread-handle.js";
import type { GrammarMethod } from "./grammar-thread.js";
import { checkJsonSchema, checkRepetitionBudget } from "./json-schema.js";
import { ConstraintError, type ConstraintSpec } from "./spec.js";

export interface GrammarCompilerOptions {
  /** Compiled grammars kept (LRU over all threads). Default 256. */
  cacheSize?: number;
  /**
   * A compilation still running after this long is stopped (its thread terminated) and the request
   * gets a 400; the grammar is remembered as refused. Default 10 s.
   */
  compileTimeoutMs?: number;
  /**
   * Grammar threads at most (each holds the preprocessed vocabulary, ~100 MB at 128k tokens; they
   * start as needed). A new grammar needs a thread without live matchers, so this bounds how many
   * threads serve live constrained sequences while another grammar compiles. Default 8.
   */
  threads?: number;
  /** How long a compilation waits for a thread without live matchers when all have some (then a 503). Default: compileTimeoutMs. */
  threadWaitMs?: number;
  /** Regex / grammar source length and choice count at most. */
  maxSourceBytes?: number;
  maxChoices?: number;
  /** Called with each compilation's duration, timeouts included (for /metrics). */
  onCompile?(seconds: number, kind: ConstraintSpec["kind"]): void;
  /** Called with each mask's computation time on its thread (for /metrics and the benchmark). */
  onMaskTime?(seconds: number): void;
}

/** The tokenizer facts the grammar engine needs: the byte-level vocabulary and the stop tokens. */
export interface GrammarVocab {
  /** Token strings in the tokenizer's byte-level alphabet, by id, padded to the logits size. Special tokens are "". */
  encodedVocab: string[];
  stopTokenIds: number[];
}

interface Prepared {
  kind: ConstraintSpec["kind"];
  source: string;
  method: GrammarMethod;
  text: string;
}

/**
 * Compiles constraint specs into grammars over the model's full vocabulary with xgrammar on worker
 * threads, keeps the most recently used ones by the hash of their spec, and hands out matchers.
 *
 * Compilation is synchronous WebAssembly that can take seconds, so it never runs on the node's
 * thread, and it has a deadline: a thread past it is terminated and the request refused with a 400
 * (the hash is remembered so it is never compiled again). A compiled grammar cannot leave the
 * thread that compiled it, so its matchers live there too, and a thread that has live matchers is
 * never given a compilation (terminating it would kill them): each compilation goes to a thread
 * without matchers, or a new one up to `threads`. Masks are computed on the grammars' threads, in
 * parallel across threads, while the engine's forward pass runs.
 */
export class GrammarCompiler {
  private readonly threads: GrammarThread[] = [];
  private readonly cache = new Map<string, { thread: GrammarThread; kind: ConstraintSpec["kind"] }>();
  private readonly inflight = new Map<string, Promise<GrammarThread>>();
  private readonly refused = new Map<string, string>();
  /** Compilations waiting for a thread without matchers. */
  private waiting: Array<() => void> = [];
  private readonly cacheSize: number;
  private readonly compileTimeoutMs: number;
  private readonly maxThreads: number;
  private readonly maxSourceBytes: number;
  private readonly maxChoices: number;
  private readonly words: number;
  private numCompiles = 0;
  private numTimeouts = 0;
  private threadsStarted = 0;
  private threadsExited = 0;
  private nextMatcherId = 0;
  private closed = false;

  private constructor(
    private readonly vocab: GrammarVocab,
    private readonly opts: GrammarCompilerOptions,
  ) {
    this.cacheSize = opts.cacheSize ?? 256;
    this.compileTimeoutMs = opts.compileTimeoutMs ?? 10_000;
    this.maxThreads = Math.max(1, opts.threads ?? 8);
    this.maxSourceBytes = opts.maxSourceBytes ?? 64 * 1024;
    this.maxChoices = opts.maxChoices ?? 1024;
    this.words = Math.ceil(vocab.encodedVocab.length / 32);
  }

  /** Starts the first grammar thread (the vocabulary is preprocessed there, ~1 s at 128k tokens). */
  static async create(vocab: GrammarVocab, opts: GrammarCompilerOptions = {}): Promise<GrammarCompiler> {
    const compiler = new GrammarCompiler(vocab, opts);
    await compiler.spawn().ready;
    return compiler;
  }

  get vocabSize(): number {
    return this.vocab.encodedVocab.length;
  }

  get stopTokenIds(): number[] {
    return this.vocab.stopTokenIds;
  }

  get stats(): { cached: number; compiles: number; timeouts: number; threads: number; threadsStarted: number; threadsExited: number; liveMatchers: number } {
    return {
      cached: this.cache.size,
      compiles: this.numCompiles,
      timeouts: this.numTimeouts,
      threads: this.threads.length,
      threadsStarted: this.threadsStarted,
      threadsExited: this.threadsExited,
      liveMatchers: this.threads.reduce((n, t) => n + t.live, 0),
    };
  }

  /**
   * `n` fresh matchers (one per choice) of `spec`'s grammar, compiled now or taken from the cache.
   * @throws ConstraintError for an invalid or unsupported spec, or one too large or too slow to compile.
   */
  async constraints(spec: ConstraintSpec, param: string, n: number): Promise<GrammarConstraint[]> {
    const prepared = this.prepare(spec, param);
    const key = createHash("sha256").update(prepared.kind).update("\0").update(prepared.source).digest("hex");
    for (;;) {
      if (this.closed) throw new Error("constrained decoding has shut down");
      const refusal = this.refused.get(key);
      if (refusal) throw new ConstraintError(refusal, param, "grammar_too_complex");
      const hit = this.cache.get(key);
      if (hit) {
        if (hit.thread.dead) {
          this.forget(hit.thread);
          continue;
        }
        if (hit.thread.compiling) {
          // Its thread is compiling another grammar; if that times out, this one is gone with it.
          await hit.thread.compiling;
          continue;
        }
        this.cache.delete(key);
        this.cache.set(key, hit);
        return this.createMatchers(hit.thread, key, n);
      }
      let compiling = this.inflight.get(key);
      if (!compiling) {
        compiling = this.compileOnFreeThread(key, prepared, param);
        this.inflight.set(key, compiling);
        const forget = () => this.inflight.delete(key);
        compiling.then(forget, forget);
      }
      const thread = await compiling;
      if (!thread.dead && thread.keys.has(key) && !thread.compiling) return this.createMatchers(thread, key, n);
    }
  }

  /** Stops every grammar thread. */
  async close(): Promise<void> {
    this.closed = true;
    for (const wake of this.waiting.splice(0)) wake();
    await Promise.all(this.threads.splice(0).map((t) => t.stop()));
  }

  private async createMatchers(thread: GrammarThread, key: string, n: number): Promise<GrammarConstraint[]> {
    // Counted before the first await, so no compilation is handed to this thread meanwhile; each
    // constraint gives its count back when disposed.
    thread.live += n;
    const release = () => {
      thread.live--;
      this.onThreadFree(thread);
    };
    const made = Array.from({ length: n }, () => {
      const mid = this.nextMatcherId++;
      const shared = new Int32Array(new SharedArrayBuffer(this.words * 4));
      return {
        constraint: new GrammarConstraint(thread, mid, shared, this.vocab.stopTokenIds, release, this.opts.onMaskTime),
        created: thread.createMatcher(key, mid, shared),
      };
    });
    const results = await Promise.allSettled(made.map((m) => m.created));
    const failed = results.find((r) => r.status === "rejected");
    if (failed) {
      for (const m of made) m.constraint.dispose();
      throw failed.reason;
    }
    return made.map((m) => m.constraint);
  }

  private async compileOnFreeThread(key: string, prepared: Prepared, param: string): Promise<GrammarThread> {
    const thread = await this.claimFreeThread(param);
    let done!: () => void;
    thread.compiling = new Promise<void>((resolve) => (done = resolve));
    const t0 = performance.now();
    try {
      const ms = await thread.compile(key, prepared.method, prepared.text, this.compileTimeoutMs);
      this.numCompiles++;
      this.opts.onCompile?.(ms / 1000, prepared.kind);
      this.cache.set(key, { thread, kind: prepared.kind });
      this.evict();
      return thread;
    } catch (err) {
      if (err instanceof CompileTimeoutError) {
        // The thread was terminated: its grammars go now, not when its exit is reported.
        this.forget(thread);
        this.numTimeouts++;
        this.opts.onCompile?.((performance.now() - t0) / 1000, prepared.kind);
        const message = `The ${describe(prepared.kind)} took longer than ${this.compileTimeoutMs} ms to compile, the limit. Simplify it (e.g. lower maxLength or the repetition counts of its patterns).`;
        if (this.refused.size >= this.cacheSize) this.refused.delete(this.refused.keys().next().value as string);
        this.refused.set(key, message);
        throw new ConstraintError(message, param, "grammar_too_complex");
      }
      if (err instanceof GrammarSyntaxError) throw new ConstraintError(`The ${describe(prepared.kind)} could not be compiled: ${err.message}`, param);
      throw err;
    } finally {
      thread.compiling = null;
      done();
      this.onThreadFree(thread);
    }
  }

  /**
   * A thread without matchers and not compiling, marked as compiling before this returns: an
   * existing one (the one caching fewest grammars), else a new one up to the limit, else the first
   * to become free (within `threadWaitMs`; past it the node is too busy: a 503).
   */
  private async claimFreeThread(param: string): Promise<GrammarThread> {
    const waitUntil = performance.now() + (this.opts.threadWaitMs ?? this.compileTimeoutMs);
    for (;;) {
      if (this.closed) throw new Error("constrained decoding has shut down");
      let best: GrammarThread | undefined;
      for (const t of this.threads) if (!t.dead && t.live === 0 && !t.compiling && (!best || t.keys.size < best.keys.size)) best = t;
      if (!best && this.threads.length < this.maxThreads) best = this.spawn();
      if (best) {
        best.compiling = Promise.resolve(); // replaced by the caller before it awaits
        await best.ready.catch((err: unknown) => {
          best.compiling = null;
          throw err;
        });
        return best;
      }
      const left = waitUntil - performance.now();
      if (left <= 0) {
        throw new ConstraintError("Every grammar thread is busy serving constrained requests; retry shortly.", param, "grammar_threads_busy", 503);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiting.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  private spawn(): GrammarThread {
    const thread = new GrammarThread(this.vocab, (t) => this.onThreadExit(t));
    this.threadsStarted++;
    this.threads.push(thread);
    return thread;
  }

  private onThreadExit(thread: GrammarThread): void {
    this.threadsExited++;
    this.forget(thread);
  }

  /** A stopped thread: out of the pool, its grammars out of the cache. */
  private forget(thread: GrammarThread): void {
    const i = this.threads.indexOf(thread);
    if (i >= 0) this.threads.splice(i, 1);
    for (const key of thread.keys) if (this.cache.get(key)?.thread === thread) this.cache.delete(key);
    thread.keys.clear();
    this.wake();
  }

  /** A thread may have become free for a compilation, or idle for good (then it is stopped). */
  private onThreadFree(thread: GrammarThread): void {
    if (thread.live === 0 && !thread.compiling && thread.keys.size === 0 && this.threads.length > 1 && !this.closed) {
      const i = this.threads.indexOf(thread);
      if (i >= 0) this.threads.splice(i, 1);
      thread.terminate();
    }
    this.wake();
  }

  private wake(): void {
    for (const wake of this.waiting.splice(0)) wake();
  }

  private evict(): void {
    while (this.cache.size > this.cacheSize) {
      const [oldest, entry] = this.cache.entries().next().value as [string, { thread: GrammarThread }];
      this.cache.delete(oldest);
      entry.thread.drop(oldest);
      this.onThreadFree(entry.thread);
    }
  }

  private prepare(spec: ConstraintSpec, param: string): Prepared {
    const limit = (what: string, text: string) => {
      if (Buffer.byteLength(text) > this.maxSourceBytes) {
        throw new ConstraintError(`The ${what} is ${Buffer.byteLength(text)} bytes; at most ${this.maxSourceBytes} are supported.`, param, "grammar_too_large");
      }
      return text;
    };
    switch (spec.kind) {
      case "json_object":
        return { kind: "json_object", source: "", method: "json_schema", text: JSON.stringify({ type: "object" }) };
      case "json_schema": {
        const schema = JSON.stringify(checkJsonSchema(spec.schema, param));
        return { kind: "json_schema", source: schema, method: "json_schema", text: schema };
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
        return { kind: "regex", source: pattern, method: "structural_tag", text: tag };
      }
      case "choice": {
        if (spec.choices.length === 0) throw new ConstraintError("choice needs at least one string.", param);
        if (spec.choices.length > this.maxChoices) throw new ConstraintError(`choice has ${spec.choices.length} strings; at most ${this.maxChoices} are supported.`, param, "grammar_too_large");
        const source = limit("choice list", JSON.stringify(spec.choices));
        const tag = JSON.stringify({
          type: "structural_tag",
          format: { type: "or", elements: spec.choices.map((value) => ({ type: "const_string", value })) },
        });
        return { kind: "choice", source, method: "structural_tag", text: tag };
      }
      case "grammar": {
        const grammar = limit("grammar", spec.grammar);
        checkRepetitionBudget(grammar, param);
        return { kind: "grammar", source: grammar, method: "ebnf", text: grammar };
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
        return { kind: "tool_call", source: schema, method: "json_schema", text: schema };
      }
    }
  }
}

function describe(kind: ConstraintSpec["kind"]): string {
  return kind === "json_object" || kind === "json_schema" ? "JSON schema" : kind === "tool_call" ? "tool schema" : kind === "choice" ? "choice list" : kind;
}
