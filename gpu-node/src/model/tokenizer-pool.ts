import { Worker } from "node:worker_threads";
import { workerScriptUrl } from "../worker-url.js";
import { ChatTemplateError } from "./errors.js";
import type { TokenizeReply, TokenizeTask } from "./tokenizer-thread.js";

/** A prompt took longer than the pool's time budget to render and tokenize; its thread was stopped. */
export class TokenizeTimeoutError extends Error {
  override readonly name = "TokenizeTimeoutError";
  constructor(readonly timeoutMs: number) {
    super(`tokenizing the prompt took longer than ${timeoutMs} ms`);
  }
}

type Job = { task: TokenizeTask; resolve: (ids: number[]) => void; reject: (e: Error) => void };

interface Slot {
  worker: Worker;
  ready: Promise<void>;
  job: Job | null;
  timer?: NodeJS.Timeout;
}

type Distribute<T> = T extends unknown ? Omit<T, "id"> : never;

/**
 * Chat-template rendering and tokenization on worker threads, with a time budget per prompt.
 *
 * Threads start on first use (each loads the model's tokenizer, ~1 s and tens of MB), run one prompt
 * at a time, and take queued prompts in arrival order. A prompt that runs past `timeoutMs` fails
 * with TokenizeTimeoutError and its thread is terminated (JavaScript cannot be interrupted any
 * other way) and replaced on the next use.
 */
export class TokenizerPool {
  private readonly slots: (Slot | null)[];
  private readonly queue: Job[] = [];
  private nextId = 0;
  private closed = false;

  constructor(
    private readonly modelDir: string,
    readonly opts: { threads: number; timeoutMs: number },
  ) {
    this.slots = new Array<Slot | null>(Math.max(1, opts.threads)).fill(null);
  }

  encode(text: string, addSpecialTokens: boolean): Promise<number[]> {
    return this.run({ kind: "text", text, addSpecialTokens });
  }

  encodeChat(messages: unknown[], opts: { addGenerationPrompt: boolean; tools?: unknown[] }): Promise<number[]> {
    return this.run({ kind: "chat", messages, addGenerationPrompt: opts.addGenerationPrompt, tools: opts.tools });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) job.reject(new Error("the tokenizer pool is closed"));
    await Promise.all(
      this.slots.map(async (slot, i) => {
        if (!slot) return;
        this.slots[i] = null;
        clearTimeout(slot.timer);
        slot.job?.reject(new Error("the tokenizer pool is closed"));
        await slot.worker.terminate();
      }),
    );
  }

  private run(task: Distribute<TokenizeTask>): Promise<number[]> {
    if (this.closed) return Promise.reject(new Error("the tokenizer pool is closed"));
    return new Promise((resolve, reject) => {
      this.queue.push({ task: { ...task, id: this.nextId++ } as TokenizeTask, resolve, reject });
      this.dispatch();
    });
  }

  private dispatch(): void {
    for (let i = 0; i < this.slots.length && this.queue.length > 0; i++) {
      let slot = this.slots[i];
      if (slot?.job) continue;
      slot ??= this.slots[i] = this.spawn(i);
      const job = this.queue.shift()!;
      slot.job = job;
      const s = slot;
      // The budget counts from when the thread is ready, so a thread's start-up is not charged to a prompt.
      void s.ready.then(
        () => {
          if (s.job !== job) return;
          s.timer = setTimeout(() => this.timeout(i, s), this.opts.timeoutMs);
          s.worker.postMessage(job.task);
        },
        (err: Error) => this.finish(i, s, () => job.reject(err), true),
      );
    }
  }

  private spawn(index: number): Slot {
    const worker = new Worker(workerScriptUrl("./tokenizer-thread.js", import.meta.url), { workerData: { modelDir: this.modelDir } });
    worker.unref();
    let markReady!: () => void;
    let failReady!: (e: Error) => void;
    const ready = new Promise<void>((resolve, reject) => {
      markReady = resolve;
      failReady = reject;
    });
    const slot: Slot = { worker, ready, job: null };
    worker.on("message", (msg: TokenizeReply) => {
      if (msg.type === "ready") return markReady();
      if (msg.type === "init-error") return failReady(new Error(`the tokenizer thread could not start: ${msg.message}`));
      const job = slot.job;
      if (!job || job.task.id !== msg.id) return;
      this.finish(index, slot, () => {
        if (msg.type === "ids") job.resolve(Array.from(msg.ids));
        else job.reject(msg.template ? new ChatTemplateError(msg.message) : new Error(msg.message));
      });
    });
    const onGone = (err: Error) => {
      failReady(err);
      if (this.slots[index] === slot) this.finish(index, slot, () => slot.job?.reject(err), true);
    };
    worker.on("error", onGone);
    worker.on("exit", () => onGone(new Error("the tokenizer thread exited")));
    return slot;
  }

  private timeout(index: number, slot: Slot): void {
    const job = slot.job;
    this.finish(index, slot, () => job?.reject(new TokenizeTimeoutError(this.opts.timeoutMs)), true);
  }

  /** Settles the slot's job; a dead or timed-out thread is dropped (and replaced on next use). */
  private finish(index: number, slot: Slot, settle: () => void, discard = false): void {
    clearTimeout(slot.timer);
    slot.timer = undefined;
    const hadJob = slot.job !== null;
    slot.job = null;
    if (discard && this.slots[index] === slot) {
      this.slots[index] = null;
      void slot.worker.terminate();
    }
    if (hadJob) settle();
    if (!this.closed) this.dispatch();
  }
}
