import type { NodeContext } from "./context.js";

const decoder = new TextDecoder("utf-8", { fatal: false });

/** A token as OpenAI's logprobs show it: its text (lossy for partial characters) and its raw bytes. */
export function tokenText(ctx: NodeContext, id: number): { text: string; bytes: number[] } {
  if (ctx.tokenTable) {
    const bytes = ctx.tokenTable.tokenBytes(id);
    if (bytes.length === 0 && ctx.tokenTable.specialIds.has(id)) {
      const text = ctx.tokenizer.decode([id], { skipSpecialTokens: false });
      return { text, bytes: Array.from(new TextEncoder().encode(text)) };
    }
    return { text: decoder.decode(bytes), bytes: Array.from(bytes) };
  }
  const text = ctx.tokenizer.decode([id], { skipSpecialTokens: false });
  return { text, bytes: Array.from(new TextEncoder().encode(text)) };
}
