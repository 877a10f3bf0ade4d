import { Worker } from "node:worker_threads";
import { workerScriptUrl } from "../worker-url.js";
import type { GrammarMethod, GrammarReply, GrammarTask, GrammarThreadData } from "./grammar-thread.js";

/** A compilation ran past its deadline; its thread was terminated. */
export class CompileTimeoutError extends Error {
  override readonly name = "CompileTimeoutError";
  constructor(readonly ms: number) {
    super(`compiling the grammar took longer than ${ms} ms`);
  }
}

/** xgrammar refused the grammar (e.g. an EBNF syntax error); the message says where. */
export class GrammarSyntaxError extends Error {
  override readonly name = "GrammarSyntaxError";
}

type Call = { resolve: (r: GrammarReply) => void; reject: (e: Error) => void };
type Fill = { mid: number; accepts: number[]; resolve: (us: number) => void; reject: (e: Error) => void };

/**
 * The node's side of one grammar thread (see grammar-thread.ts): requests by id, and the masks of
 * one engine step gathered into a single message (every fill asked for in the same tick).
 */
export class GrammarThread {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  /** Matchers alive on this thread. A thread with any never compiles (a timeout would kill them). */
  live = 0;
  /** Set while a compilation runs here; matchers for this thread's grammars wait for it. */
  compiling: Promise<void> | null = null;
  /** Keys of the grammars compiled here and still cached. */
  readonly keys = new Set<string>();
  dead = false;
  private nextId = 0;
  private readonly calls = new Map<number, Call>();
  private batch: Fill[] | null = null;

  constructor(data: GrammarThreadData, onExit: (t: GrammarThread) => void) {
    this.worker = new Worker(workerScriptUrl("./grammar-thread.js", import.meta.url), { workerData: data });
    this.worker.unref();
    let markReady!: () => void;
    let failReady!: (e: Error) => void;
    this.ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      failReady = reject;
    });
    this.ready.catch(() => {});
    this.worker.on("message", (msg: GrammarReply) => {
      if (msg.t === "ready") return markReady();
      if (msg.t === "init-error") return failReady(new Error(`the grammar thread could not start: ${msg.message}`));
      const call = this.calls.get(msg.id);
      this.calls.delete(msg.id);
      call?.resolve(msg);
    });
    let exited = false;
    const gone = (err: Error) => {
      if (exited) return;
      exited = true;
      failReady(err);
      this.dead = true;
      for (const call of this.calls.values()) call.reject(err);
      this.calls.clear();
      onExit(this);
    };
    this.worker.on("error", gone);
    this.worker.on("exit", () => gone(new Error("the grammar thread exited")));
  }

  /**
   * Compiles a grammar here within `deadlineMs` (counted from when the thread has it). Past the
   * deadline the thread is terminated (WebAssembly cannot be interrupted any other way).
   * @returns the compile time in ms. @throws CompileTimeoutError, GrammarSyntaxError
   */
  async compile(key: string, method: GrammarMethod, text: string, deadlineMs: number): Promise<number> {
    await this.ready;
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.terminate();
        reject(new CompileTimeoutError(deadlineMs));
      }, deadlineMs);
    });
    try {
      const reply = await Promise.race([this.call((id) => ({ t: "compile", id, key, method, text })), deadline]);
      if (reply.t === "error") throw new GrammarSyntaxError(reply.message);
      if (reply.t !== "compiled") throw new Error(`grammar thread: unexpected reply ${reply.t}`);
      this.keys.add(key);
      return reply.ms;
    } finally {
      clearTimeout(timer);
    }
  }

  /** A matcher of a grammar compiled here, writing its masks into `mask` (shared memory). */
  async createMatcher(key: string, mid: number, mask: Int32Array): Promise<void> {
    const reply = await this.call((id) => ({ t: "matcher", id, key, mid, mask }));
    if (reply.t === "error") throw new Error(`grammar thread: ${reply.message}`);
  }

  disposeMatcher(mid: number): void {
    if (!this.dead) this.worker.postMessage({ t: "dispose", mid } satisfies GrammarTask);
  }

  drop(key: string): void {
    this.keys.delete(key);
    if (!this.dead) this.worker.postMessage({ t: "drop", key } satisfies GrammarTask);
  }

  /**
   * Advances matcher `mid` past `accepts` and writes its next mask; resolves with the mask's cost
   * in µs. Every fill asked for in the same tick goes to the thread as one message.
   */
  fill(mid: number, accepts: number[]): Promise<number> {
    return new Promise((resolve, reject) => {
      if (!this.batch) {
        this.batch = [];
        queueMicrotask(() => this.flush());
      }
      this.batch.push({ mid, accepts, resolve, reject });
    });
  }

  terminate(): void {
    if (this.dead) return;
    this.dead = true;
    void this.worker.terminate();
  }

  /** Terminates the thread and waits until it has stopped. */
  async stop(): Promise<void> {
    this.dead = true;
    await this.worker.terminate();
  }

  private flush(): void {
    const batch = this.batch!;
    this.batch = null;
    const mids = Int32Array.from(batch, (f) => f.mid);
    this.call((id) => ({ t: "fill", id, mids, accepts: batch.map((f) => f.accepts) })).then(
      (reply) => {
        if (reply.t !== "filled") {
          const err = new Error(`grammar thread: ${reply.t === "error" ? reply.message : `unexpected reply ${reply.t}`}`);
          for (const f of batch) f.reject(err);
          return;
        }
        batch.forEach((f, i) => {
          if (reply.rejected?.mid === f.mid) {
            f.reject(new Error(`constrained decoding: the engine sampled token ${reply.rejected.token}, which the sequence's grammar does not allow`));
          } else f.resolve(reply.us[i]!);
        });
      },
      (err: Error) => batch.forEach((f) => f.reject(err)),
    );
  }

  private call(task: (id: number) => GrammarTask): Promise<GrammarReply> {
    if (this.dead) return Promise.reject(new Error("the grammar thread has stopped"));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.worker.postMessage(task(id));
    });
  }
}
