import type { Completion } from "../protocol/completions.js";
import type { FinishReason, Usage } from "../protocol/common.js";
import { SSESource, type ChunkSource } from "../core/source.js";
import { CompletionStreamBase, type StreamInit } from "../core/stream.js";

type Logprobs = NonNullable<Completion["choices"][number]["logprobs"]>;

interface ChoiceState {
  text: string;
  finishReason: FinishReason | null;
  logprobs: Logprobs | null;
}

/** A streamed (legacy) text completion; chunks have the same shape as a `Completion`. */
export class CompletionStream extends CompletionStreamBase<Completion, Completion> {
  private id = "";
  private created = 0;
  private model = "";
  private usage: Usage | undefined;
  private readonly choices: ChoiceState[] = [];

  constructor(source: ChunkSource<Completion>, init?: StreamInit) {
    super(source, init);
  }

  static fromReadableStream(body: ReadableStream<Uint8Array>): CompletionStream {
    return new CompletionStream(new SSESource<Completion>(body));
  }

  static fromResponse(response: Response): CompletionStream {
    if (!response.body) throw new TypeError("The response has no body to stream.");
    return new CompletionStream(new SSESource<Completion>(response.body, { headers: response.headers }), { response });
  }

  protected fork(source: ChunkSource<Completion>): this {
    return new CompletionStream(source, { response: this.response, hideUsageChunk: this.hideUsageChunk }) as this;
  }

  protected accumulate(chunk: Completion): void {
    this.lastDelta = "";
    if (this.id === "") {
      this.id = chunk.id;
      this.created = chunk.created;
      this.model = chunk.model;
    }
    if (chunk.usage) {
      this.usage = chunk.usage;
      if (this.listeners.usage) this.emit("usage", chunk.usage);
    }
    for (const c of chunk.choices) {
      const state = (this.choices[c.index] ??= { text: "", finishReason: null, logprobs: null });
      if (c.text) {
        state.text += c.text;
        if (c.index === 0) this.lastDelta = c.text;
        if (this.listeners.content) this.emit("content", c.text, state.text, c.index);
      }
      if (c.finish_reason) state.finishReason = c.finish_reason;
      if (c.logprobs) {
        const lp = (state.logprobs ??= { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] });
        lp.tokens.push(...c.logprobs.tokens);
        lp.token_logprobs.push(...c.logprobs.token_logprobs);
        lp.top_logprobs.push(...c.logprobs.top_logprobs);
        lp.text_offset.push(...c.logprobs.text_offset);
      }
    }
  }

  protected allChoicesFinished(): boolean {
    let seen = 0;
    for (const s of this.choices) {
      if (!s) continue;
      seen++;
      if (s.finishReason === null) return false;
    }
    return seen > 0;
  }

  protected assemble(): Completion {
    const completion: Completion = {
      id: this.id,
      object: "text_completion",
      created: this.created,
      model: this.model,
      choices: [],
    };
    this.choices.forEach((s, index) => {
      completion.choices.push({ index, text: s.text, logprobs: s.logprobs, finish_reason: s.finishReason ?? "stop" });
    });
    if (this.usage) completion.usage = this.usage;
    return completion;
  }
}
