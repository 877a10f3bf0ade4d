import type { ChatCompletion, ChatCompletionCreateParams } from "../protocol/chat.js";
import { ResponseValidationError } from "../core/errors.js";
import type { RequestOptions } from "../internal/transport.js";
import type { ChatCompletions } from "../resources/chat.js";
import { issuePath, toJSONSchema, type InferOutput, type StandardSchemaV1 } from "./standard-schema.js";

export type ParseParams<S extends StandardSchemaV1> = Omit<ChatCompletionCreateParams, "response_format" | "stream"> & {
  /** The shape of the answer: a zod (4.2+) or other Standard Schema that exports JSON Schema. */
  responseFormat: S;
  /** Names the schema for the model (default "response"). */
  responseFormatName?: string;
};

export type ParsedChatCompletion<S extends StandardSchemaV1> = ChatCompletion & {
  /** The first choice's content, parsed and validated. */
  parsed: InferOutput<S>;
};

export async function parseChatCompletion<S extends StandardSchemaV1>(
  completions: ChatCompletions,
  params: ParseParams<S>,
  options?: RequestOptions,
): Promise<ParsedChatCompletion<S>> {
  const { responseFormat, responseFormatName, ...rest } = params;
  const schema = toJSONSchema(responseFormat, "responseFormat");
  const completion = await completions.create(
    {
      ...rest,
      stream: false,
      response_format: {
        type: "json_schema",
        json_schema: { name: responseFormatName ?? "response", schema, strict: true },
      },
    },
    options,
  );
  const choice = completion.choices[0];
  const content = choice?.message.content ?? null;
  if (choice?.finish_reason === "length") {
    throw new ResponseValidationError("The answer was cut off by the token limit before the JSON was complete.", content ?? undefined);
  }
  if (content === null) throw new ResponseValidationError("The answer has no content to parse.", undefined);
  const parsed = await validateJSON(responseFormat, content);
  return { ...completion, parsed };
}

/** Parses `text` as JSON (allowing a Markdown code fence around it) and validates it with `schema`. */
export async function validateJSON<S extends StandardSchemaV1>(schema: S, text: string): Promise<InferOutput<S>> {
  let value: unknown;
  try {
    value = JSON.parse(stripFence(text));
  } catch {
    throw new ResponseValidationError("The answer is not valid JSON.", text);
  }
  const result = await schema["~standard"].validate(value);
  if (result.issues) {
    const first = result.issues[0];
    const path = first ? issuePath(first).map(String).join(".") : "";
    throw new ResponseValidationError(
      `The answer does not match the schema${path ? ` at ${path}` : ""}: ${first?.message ?? "invalid"}`,
      text,
      result.issues.map((i) => ({ message: i.message, path: issuePath(i) })),
    );
  }
  return result.value as InferOutput<S>;
}

function stripFence(text: string): string {
  const t = text.trim();
  const m = /^```(?:json)?\s*\n([\s\S]*?)\n?```$/.exec(t);
  return m ? m[1]! : t;
}
