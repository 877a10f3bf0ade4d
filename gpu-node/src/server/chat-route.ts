import {
  chatCompletionRequestSchema,
  type ChatCompletion,
  type ChatCompletionRequest,
  type TokenLogprob,
  type Tool,
  type ToolCall,
} from "@seventy/sdk/protocol";
import type { NodeContext, RequestConn } from "./context.js";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { Generation, type ChoiceDelta, type GenerationSpec, type FinishReason, type GenerationUsage, type TokenLogprobInfo } from "./generation.js";
import { HttpError } from "./http-error.js";
import { checkModel, newId, resolveMaxTokens, samplingParams, stopStrings } from "./request-prep.js";
import { SseWriter } from "./sse.js";
import { tokenText } from "./token-text.js";
import { parseToolCalls } from "./tool-calls.js";
import { admit, observeRequest } from "./admission.js";

type Message = ChatCompletionRequest["messages"][number];

/** Content parts → one string; the template and the model see plain text. */
function flattenContent(content: string | Array<{ type: "text"; text: string }> | undefined): string | undefined {
  if (content === undefined) return undefined;
  return typeof content === "string" ? content : content.map((p) => p.text).join("");
}

/** OpenAI messages → what the Llama 3.1 template expects (HF conventions). */
function templateMessage(m: Message): Record<string, unknown> {
  switch (m.role) {
    case "developer":
      return { role: "system", content: flattenContent(m.content) };
    case "assistant": {
      const out: Record<string, unknown> = { role: "assistant", content: flattenContent(m.content) ?? "" };
      if (m.tool_calls && m.tool_calls.length > 0) {
        out.tool_calls = m.tool_calls.map((tc) => {
          let args: unknown = tc.function.arguments;
          try {
            args = JSON.parse(tc.function.arguments);
          } catch {
            // Leave unparseable arguments as the string the client sent.
          }
          return { id: tc.id, type: "function", function: { name: tc.function.name, arguments: args } };
        });
      }
      return out;
    }
    case "tool":
      return { role: "tool", content: flattenContent(m.content), tool_call_id: m.tool_call_id };
    default:
      return { role: m.role, content: flattenContent(m.content) };
  }
}

function toLogprobs(ctx: NodeContext, infos: TokenLogprobInfo[]): TokenLogprob[] {
  return infos.map((info) => {
    const t = tokenText(ctx, info.tokenId);
    return {
      token: t.text,
      logprob: info.logprob,
      bytes: t.bytes,
      top_logprobs: info.top.map((top) => {
        const tt = tokenText(ctx, top.tokenId);
        return { token: tt.text, logprob: top.logprob, bytes: tt.bytes };
      }),
    };
  });
}

/** A chat request made ready to run: the rendered prompt and the generation spec. */
export interface ChatPlan {
  id: string;
  created: number;
  spec: GenerationSpec;
  /** The tools the model was shown (none with tool_choice "none"). */
  tools: Tool[];
  makeToolCallId: () => string;
}

/**
 * Render → plan for a validated chat request: checks the model and tool choice, renders the
 * messages through the chat template and resolves the sampling parameters. Shared by every route
 * that serves a conversation (chat completions, responses).
 */
export function planChat(ctx: NodeContext, req: ChatCompletionRequest, id: string): ChatPlan {
  checkModel(ctx, req.model);
  if (req.tool_choice !== undefined && req.tool_choice !== "auto" && req.tool_choice !== "none") {
    throw new HttpError(400, "Only tool_choice 'auto' and 'none' are supported (no constrained decoding yet).", {
      param: "tool_choice",
      code: "unsupported_value",
    });
  }
  const tools: Tool[] = req.tool_choice === "none" ? [] : (req.tools ?? []);

  let promptTokenIds: number[];
  try {
    promptTokenIds = ctx.tokenizer.encodeChat(req.messages.map(templateMessage), {
      addGenerationPrompt: true,
      tools: tools.length > 0 ? tools : undefined,
    });
  } catch (err) {
    // The chat template raises for conversations it cannot express (e.g. two tool calls at once).
    throw new HttpError(400, `The chat template rejected the messages: ${(err as Error).message}`, {
      param: "messages",
      code: "invalid_messages",
    });
  }
  const maxParam = req.max_completion_tokens !== undefined ? "max_completion_tokens" : "max_tokens";
  const maxTokens = resolveMaxTokens(ctx, promptTokenIds.length, req.max_completion_tokens ?? req.max_tokens, maxParam, "messages");
  const wantLogprobs = req.logprobs === true;
  const created = Math.floor(Date.now() / 1000);
  const spec = {
    requestId: id,
    promptTokenIds,
    params: samplingParams(ctx, req, wantLogprobs ? (req.top_logprobs ?? 0) : -1),
    maxTokens,
    stopTokenIds: req.ignore_eos ? [] : ctx.eosTokenIds,
    stopStrings: stopStrings(req.stop),
    wantLogprobs,
  };
  const makeToolCallId = () => `call_${crypto.randomUUID().replace(/-/g, "").slice(0, 24)}`;

  return { id, created, spec, tools, makeToolCallId };
}

export async function chatCompletions(ctx: NodeContext, body: unknown, conn: RequestConn): Promise<Response> {
  const parsed = chatCompletionRequestSchema.safeParse(body);
  if (!parsed.success) {
    throw HttpError.fromZod(parsed.error);
  }
  const req = parsed.data;
  const { id, created, spec, tools, makeToolCallId } = planChat(ctx, req, newId("chatcmpl"));
  const wantLogprobs = spec.wantLogprobs;
  const promptTokenIds = spec.promptTokenIds;

  if (req.stream) {
    return streamChat(ctx, spec, { id, created, includeUsage: req.stream_options?.include_usage === true, tools, makeToolCallId }, conn);
  }

  // Non-streaming: collect every choice, then answer once.
  const n = spec.params.length;
  const texts = new Array<string>(n).fill("");
  const logprobs: TokenLogprobInfo[][] = Array.from({ length: n }, () => []);
  const finish = new Array<FinishReason>(n).fill("length");
  const observe = observeRequest(ctx, promptTokenIds.length);
  let resolveUsage!: (u: GenerationUsage) => void;
  let rejectUsage!: (e: Error) => void;
  const done = new Promise<GenerationUsage>((resolve, reject) => {
    resolveUsage = resolve;
    rejectUsage = reject;
  });
  const gen = new Generation(ctx.scheduler, spec, ctx.makeDetokenizer, {
    onDelta(d: ChoiceDelta) {
      texts[d.index] += d.text;
      if (d.logprobs.length) logprobs[d.index]!.push(...d.logprobs);
      if (d.finishReason) finish[d.index] = d.finishReason;
    },
    onDone: resolveUsage,
    onError: rejectUsage,
    onToken: observe.onToken,
  });
  // Admission errors (queue full, too large) are thrown here, before any response exists.
  admit(gen);
  conn.signal.addEventListener("abort", () => gen.cancel(), { once: true });
  const usage = await done.catch((err: Error) => {
    observe.done("error");
    throw new HttpError(500, `Generation failed: ${err.message}`, { code: "engine_error" });
  });
  observe.done(finish[0] ?? "length");
  const completion: ChatCompletion = {
    id,
    object: "chat.completion",
    created,
    model: ctx.modelName,
    system_fingerprint: null,
    choices: texts.map((text, index) => {
      const calls: ToolCall[] | null = tools.length > 0 ? parseToolCalls(text, tools, makeToolCallId) : null;
      return {
        index,
        message: calls
          ? { role: "assistant" as const, content: null, tool_calls: calls }
          : { role: "assistant" as const, content: text },
        logprobs: wantLogprobs ? { content: toLogprobs(ctx, logprobs[index]!) } : null,
        finish_reason: calls ? ("tool_calls" as const) : finish[index]!,
      };
    }),
    usage: usageJson(usage),
  };
  return new Response(JSON.stringify(completion), { headers: { "content-type": "application/json" } });
}

export function usageJson(u: GenerationUsage) {
  return {
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    total_tokens: u.promptTokens + u.completionTokens,
    prompt_tokens_details: { cached_tokens: u.cachedTokens },
  };
}

interface StreamOpts {
  id: string;
  created: number;
  includeUsage: boolean;
  tools: Tool[];
  makeToolCallId: () => string;
}

function streamChat(
  ctx: NodeContext,
  spec: ConstructorParameters<typeof Generation>[1],
  opts: StreamOpts,
  conn: RequestConn,
): Response {
  // Every chunk shares this prefix; building it once keeps the per-token cost to one small stringify.
  const head = `{"id":"${opts.id}","object":"chat.completion.chunk","created":${opts.created},"model":${JSON.stringify(ctx.modelName)},"system_fingerprint":null,"choices":[`;
  const n = spec.params.length;
  // With tools, an answer that starts with "{" may be a tool call: hold it until the end to decide.
  const toolBuffer: Array<string | null> = new Array(n).fill(null);
  const started = new Array<boolean>(n).fill(false);
  const observe = observeRequest(ctx, spec.promptTokenIds.length);
  // Created after admission succeeds, so a refusal can still be an ordinary error response.
  // Scheduler events are always delivered asynchronously, after this function returns.
  let sse!: SseWriter;
  let lastFinish: string = "abort";

  const choiceChunk = (index: number, delta: string, logprobs: string, finish: string) =>
    `${head}{"index":${index},"delta":${delta},"logprobs":${logprobs},"finish_reason":${finish}}]}`;

  const gen = new Generation(ctx.scheduler, spec, ctx.makeDetokenizer, {
    onToken: observe.onToken,
    onDelta(d) {
      let text = d.text;
      if (opts.tools.length > 0 && !started[d.index]) {
        // Undecided while the answer is only whitespace; a tool call once it starts with "{".
        const pending = (toolBuffer[d.index] ?? "") + text;
        const head = pending.trimStart();
        if (head === "" || head.startsWith("{")) {
          toolBuffer[d.index] = pending;
          if (!d.finishReason) return;
          const buffered = pending;
          const calls = parseToolCalls(buffered, opts.tools, opts.makeToolCallId);
          if (calls) {
            const deltas = calls.map((c, i) => ({ index: i, id: c.id, type: "function", function: c.function }));
            sse.data(choiceChunk(d.index, `{"role":"assistant","content":null,"tool_calls":${JSON.stringify(deltas)}}`, "null", "null"));
            sse.data(choiceChunk(d.index, "{}", "null", '"tool_calls"'));
            lastFinish = "tool_calls";
            return;
          }
          text = buffered;
        } else {
          text = pending;
        }
        toolBuffer[d.index] = null;
      }
      const lp = d.logprobs.length ? JSON.stringify({ content: toLogprobs(ctx, d.logprobs) }) : "null";
      if (!started[d.index]) {
        started[d.index] = true;
        // OpenAI's first chunk carries the role.
        sse.data(choiceChunk(d.index, `{"role":"assistant","content":""}`, "null", "null"));
      }
      if (text.length > 0 || d.logprobs.length > 0) {
        sse.data(choiceChunk(d.index, `{"content":${JSON.stringify(text)}}`, lp, "null"));
      }
      if (d.finishReason) {
        lastFinish = d.finishReason;
        sse.data(choiceChunk(d.index, "{}", "null", `"${d.finishReason}"`));
      }
    },
    onDone(usage) {
      observe.done(lastFinish);
      if (sse.isClosed) return;
      if (opts.includeUsage) {
        sse.data(`{"id":"${opts.id}","object":"chat.completion.chunk","created":${opts.created},"model":${JSON.stringify(ctx.modelName)},"system_fingerprint":null,"choices":[],"usage":${JSON.stringify(usageJson(usage))}}`);
      }
      sse.done();
    },
    onError(err) {
      observe.done("error");
      sse.fail(err);
    },
  });
  admit(gen);
  sse = new SseWriter(() => gen.cancel(), conn.outgoing, { "x-request-id": conn.requestId });
  conn.signal.addEventListener("abort", () => gen.cancel(), { once: true });
  return sse.response(RESPONSE_ALREADY_SENT);
}
