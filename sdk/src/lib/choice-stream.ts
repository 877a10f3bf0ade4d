import type { FinishReason, Usage } from "../protocol/common.js";
import { SSESource } from "../core/source.js";
import { CompletionStreamBase } from "../core/stream.js";

/** What chat completion chunks and text completion chunks have in common. */
interface ChoiceChunk {
  id: string;
  created: number;
  model: string;
  choices: readonly { index: number }[];
  usage?: Usage | null;
}

/** What a stream keeps of every choice, at the least: its text so far and how it finished. */
export interface ChoiceState {
  text: string;
  finishReason: FinishReason | null;
}

/**
 * What chat and text completion streams assemble alike: the envelope (id, created, model) of the
 * first chunk, usage when it comes, and a state per choice `index`, finished when it has a finish
 * reason. Subclasses fold each choice's delta into its state (`accumulateChoice`).
 */
export abstract class ChoiceStream<TChunk extends ChoiceChunk, TFinal, TState extends ChoiceState> extends CompletionStreamBase<TChunk, TFinal> {
  protected id = "";
  protected created = 0;
  protected model = "";
  protected usage: Usage | undefined;
  protected readonly choices: TState[] = [];

  /** The state of a choice not seen before. */
  protected abstract newChoice(): TState;
  protected abstract accumulateChoice(state: TState, choice: TChunk["choices"][number]): void;

  protected accumulate(chunk: TChunk): void {
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
    const choices = chunk.choices;
    for (let i = 0; i < choices.length; i++) {
      const c = choices[i]!;
      this.accumulateChoice((this.choices[c.index] ??= this.newChoice()), c);
    }
  }

  /** Appends a piece of a choice's text; the first choice's piece is what `textStream` yields next. */
  protected appendText(state: TState, index: number, piece: string): void {
    state.text += piece;
    if (index === 0) this.lastDelta = piece;
    if (this.listeners.content) this.emit("content", piece, state.text, index);
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
}

/** The SSE chunks of a `Response` body (with its headers, for errors); a response without a body is a caller's mistake. */
export function responseSource<T>(response: Response): SSESource<T> {
  if (!response.body) throw new TypeError("The response has no body to stream.");
  return new SSESource<T>(response.body, { headers: response.headers });
}
