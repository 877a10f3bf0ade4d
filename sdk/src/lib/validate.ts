import { chatCompletionChunkSchema, chatCompletionSchema } from "../protocol/chat.js";
import { completionSchema } from "../protocol/completions.js";
import { modelListSchema, modelSchema } from "../protocol/models.js";
import type { ChatCompletion, ChatCompletionChunk } from "../protocol/chat.js";
import type { Completion } from "../protocol/completions.js";
import type { Model, ModelList } from "../protocol/models.js";
import { ResponseValidationError } from "../core/errors.js";

/**
 * Checks responses at run time. Off by default (see the README for the measured cost); pass
 * `validate: protocolValidator` to the client to check every response and chunk against the
 * protocol's zod schemas. Importing it is what brings zod into a bundle.
 */
export interface ResponseValidator {
  chatCompletion(value: unknown): ChatCompletion;
  chatCompletionChunk(value: unknown): ChatCompletionChunk;
  completion(value: unknown): Completion;
  model(value: unknown): Model;
  modelList(value: unknown): ModelList;
}

interface Parser<T> {
  safeParse(value: unknown): { success: true; data: T } | { success: false; error: { issues: { message: string; path: PropertyKey[] }[] } };
}

function check<T>(schema: Parser<T>, what: string): (value: unknown) => T {
  return (value) => {
    const r = schema.safeParse(value);
    if (r.success) return r.data;
    const first = r.error.issues[0];
    const where = first?.path.length ? ` at ${first.path.map(String).join(".")}` : "";
    throw new ResponseValidationError(
      `The server sent a ${what} that does not match the protocol${where}: ${first?.message ?? "invalid"}`,
      JSON.stringify(value)?.slice(0, 1000),
      r.error.issues,
    );
  };
}

export const protocolValidator: ResponseValidator = {
  chatCompletion: check(chatCompletionSchema, "chat completion"),
  chatCompletionChunk: check(chatCompletionChunkSchema, "chat completion chunk"),
  completion: check(completionSchema, "completion"),
  model: check(modelSchema, "model"),
  modelList: check(modelListSchema, "model list"),
};
