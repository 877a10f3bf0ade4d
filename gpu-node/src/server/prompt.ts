import { ChatTemplateError } from "../model/errors.js";
import { TokenizeTimeoutError } from "../model/tokenizer-pool.js";
import type { NodeContext } from "./context.js";
import { HttpError } from "./http-error.js";
import { checkPromptChars, countChars } from "./request-limits.js";

/**
 * Prompts up to this many characters are rendered and tokenized on the event loop (well under a
 * millisecond; a thread hop would cost more); larger ones go to the tokenizer threads.
 */
const INLINE_CHARS = 16 * 1024;

/** Renders the chat template and tokenizes it: size-capped first, off the event loop when large. */
export async function encodeChatPrompt(
  ctx: NodeContext,
  messages: unknown[],
  opts: { addGenerationPrompt: boolean; tools?: unknown[] },
): Promise<number[]> {
  const chars = countChars(messages) + (opts.tools ? countChars(opts.tools) : 0);
  checkPromptChars(ctx, chars, "messages");
  try {
    if (ctx.tokenizerPool && chars > INLINE_CHARS) return await ctx.tokenizerPool.encodeChat(messages, opts);
    return ctx.tokenizer.encodeChat(messages, opts);
  } catch (err) {
    throw promptError(err, "messages");
  }
}

/** Tokenizes a completion prompt: size-capped first, off the event loop when large. */
export async function encodeTextPrompt(ctx: NodeContext, text: string, addSpecialTokens: boolean, param: string): Promise<number[]> {
  checkPromptChars(ctx, text.length, param);
  try {
    if (ctx.tokenizerPool && text.length > INLINE_CHARS) return await ctx.tokenizerPool.encode(text, addSpecialTokens);
    return ctx.tokenizer.encode(text, { addSpecialTokens });
  } catch (err) {
    throw promptError(err, param);
  }
}

function promptError(err: unknown, param: string): unknown {
  if (err instanceof ChatTemplateError) {
    // The chat template raises for conversations it cannot express (e.g. two tool calls at once).
    return new HttpError(400, `The chat template rejected the messages: ${err.message}`, { param, code: "invalid_messages" });
  }
  if (err instanceof TokenizeTimeoutError) {
    return new HttpError(400, `The prompt is too complex: rendering and tokenizing it took longer than ${err.timeoutMs} ms.`, {
      param,
      code: "prompt_too_complex",
    });
  }
  return err;
}
