import type { Completion } from "../protocol/completions.js";
import { SSESource, type ChunkSource } from "../core/source.js";
import type { StreamInit } from "../core/stream.js";
import { ChoiceStream, responseSource, type ChoiceState } from "./choice-stream.js";

type Logprobs = NonNullable<Completion["choices"][number]["logprobs"]>;

interface CompletionChoiceState extends ChoiceState {
  logprobs: Logprobs | null;
}

/** A streamed (legacy) text completion; chunks have the same shape as a `Completion`. */
export class CompletionStream extends ChoiceStream<Completion, Completion, CompletionChoiceState> {
  constructor(source: ChunkSource<Completion>, init?: StreamInit) {
    super(source, init);
  }

  static fromReadableStream(body: ReadableStream<Uint8Array>): CompletionStream {
    return new CompletionStream(new SSESource<Completion>(body));
  }

  static fromResponse(response: Response): CompletionStream {
    return new CompletionStream(responseSource<Completion>(response), { response });
  }

  protected fork(source: ChunkSource<Completion>): this {
    return new CompletionStream(source, { response: this.response, hideUsageChunk: this.hideUsageChunk }) as this;
  }

  protected newChoice(): CompletionChoiceState {
    return { text: "", finishReason: null, logprobs: null };
  }

  protected accumulateChoice(state: CompletionChoiceState, c: Completion["choices"][number]): void {
    if (c.text) this.appendText(state, c.index, c.text);
    if (c.finish_reason) state.finishReason = c.finish_reason;
    if (c.logprobs) {
      const lp = (state.logprobs ??= { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] });
      lp.tokens.push(...c.logprobs.tokens);
      lp.token_logprobs.push(...c.logprobs.token_logprobs);
      lp.top_logprobs.push(...c.logprobs.top_logprobs);
      lp.text_offset.push(...c.logprobs.text_offset);
    }
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
