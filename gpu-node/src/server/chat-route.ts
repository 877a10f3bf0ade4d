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
import { Generation, type GenerationSpec, type ChoiceDelta, type FinishReason, type GenerationUsage, type TokenLogprobInfo } from "./generation.js";
import { HttpError } from "./http-error.js";
import { checkModel, newId, resolveMaxTokens, samplingParams } from "./request-prep.js";
import { encodeChatPrompt } from "./prompt.js";
import { checkLogprobVolume, checkSchemaDepth, checkSequences, checkStopStrings, checkTools } from "./request-limits.js";
import { SseWriter } from "./sse.js";
import { tokenText } from "./token-text.js";
import { ToolCallStream, type ToolCallEvent } from "./tool-call-stream.js";
import { prepareConstraints } from "./constraint-request.js";
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

export async function chatCompletions(ctx: NodeContext, body: unknown, conn: RequestConn): Promise<Response> {
  const parsed = chatCompletionRequestSchema.safeParse(body);
  if (!parsed.success) {
    throw HttpError.fromZod(parsed.error);
  }
  const req = parsed.data;
  checkModel(ctx, req.model);
  checkSequences(ctx, 1, req.n ?? 1);
  if (req.tools) checkTools(ctx, req.tools);
  if (req.response_format?.type === "json_schema") checkSchemaDepth(ctx, req.response_format.json_schema.schema, "response_format.json_schema.schema");
  const stops = checkStopStrings(ctx, req.stop);
  const tools: Tool[] = req.tool_choice === "none" ? [] : (req.tools ?? []);

  const promptTokenIds = await encodeChatPrompt(ctx, req.messages.map(templateMessage), {
    addGenerationPrompt: true,
    tools: tools.length > 0 ? tools : undefined,
  });
  const maxParam = req.max_completion_tokens !== undefined ? "max_completion_tokens" : "max_tokens";
  const maxTokens = resolveMaxTokens(ctx, promptTokenIds.length, req.max_completion_tokens ?? req.max_tokens, maxParam, "messages");
  const wantLogprobs = req.logprobs === true;
  if (wantLogprobs) checkLogprobVolume(ctx, req.n ?? 1, req.top_logprobs ?? 0, maxTokens, "top_logprobs");
  const id = newId("chatcmpl");
  const created = Math.floor(Date.now() / 1000);
  const params = samplingParams(ctx, req, wantLogprobs ? (req.top_logprobs ?? 0) : -1);
  // Last before admission: the grammars hold memory that the Generation releases.
  const { constraints } = await prepareConstraints(ctx, req, params.length);
  const spec: GenerationSpec = {
    requestId: id,
    promptTokenIds,
    params,
    maxTokens,
    stopTokenIds: req.ignore_eos ? [] : ctx.eosTokenIds,
    stopStrings: stops,
    wantLogprobs,
    ...conn.tenant,
    ...(constraints ? { constraints } : {}),
  };
  const makeToolCallId = () => `call_${crypto.randomUUID().replace(/-/g, "").slice(0, 24)}`;

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
      const calls: ToolCall[] | null = tools.length > 0 ? toolCallsIn(text, tools, makeToolCallId) : null;
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

/** The tool calls in a whole answer, found exactly as a stream finds them (so both give the same arguments). */
function toolCallsIn(text: string, tools: Tool[], makeId: () => string): ToolCall[] | null {
  const stream = new ToolCallStream(tools, makeId);
  stream.push(text);
  return stream.finish().calls;
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
  spec: GenerationSpec,
  opts: StreamOpts,
  conn: RequestConn,
): Response {
  // Every chunk shares this prefix; building it once keeps the per-token cost to one small stringify.
  const head = `{"id":"${opts.id}","object":"chat.completion.chunk","created":${opts.created},"model":${JSON.stringify(ctx.modelName)},"system_fingerprint":null,"choices":[`;
  const n = spec.params.length;
  // With tools, each choice's text goes through a ToolCallStream: content as soon as it cannot be a
  // call, a call's name as soon as it is known, then its arguments piece by piece.
  const toolStreams = opts.tools.length > 0 ? Array.from({ length: n }, () => new ToolCallStream(opts.tools, opts.makeToolCallId)) : null;
  const started = new Array<boolean>(n).fill(false);
  const observe = observeRequest(ctx, spec.promptTokenIds.length);
  // Created after admission succeeds, so a refusal can still be an ordinary error response.
  // Scheduler events are always delivered asynchronously, after this function returns.
  let sse!: SseWriter;
  let lastFinish: string = "abort";

  const choiceChunk = (index: number, delta: string, logprobs: string, finish: string) =>
    `${head}{"index":${index},"delta":${delta},"logprobs":${logprobs},"finish_reason":${finish}}]}`;
  const sendContent = (index: number, text: string, lp: string) => {
    if (!started[index]) {
      started[index] = true;
      // OpenAI's first chunk carries the role.
      sse.data(choiceChunk(index, `{"role":"assistant","content":""}`, "null", "null"));
    }
    if (text.length > 0 || lp !== "null") sse.data(choiceChunk(index, `{"content":${JSON.stringify(text)}}`, lp, "null"));
  };
  const sendToolEvent = (index: number, ev: ToolCallEvent, lp: string) => {
    if (ev.type === "content") return sendContent(index, ev.text, lp);
    const call =
      ev.type === "call"
        ? { index: ev.index, id: ev.id, type: "function", function: { name: ev.name, arguments: "" } }
        : { index: ev.index, function: { arguments: ev.text } };
    const role = started[index] ? "" : `"role":"assistant","content":null,`;
    started[index] = true;
    sse.data(choiceChunk(index, `{${role}"tool_calls":[${JSON.stringify(call)}]}`, "null", "null"));
  };

  const gen = new Generation(ctx.scheduler, spec, ctx.makeDetokenizer, {
    onToken: observe.onToken,
    onDelta(d) {
      const lp = d.logprobs.length ? JSON.stringify({ content: toLogprobs(ctx, d.logprobs) }) : "null";
      let finish: string | undefined = d.finishReason;
      const tools = toolStreams?.[d.index];
      if (tools) {
        const events = tools.push(d.text);
        if (d.finishReason) {
          const end = tools.finish();
          events.push(...end.events);
          if (end.calls) finish = "tool_calls";
        }
        let lpLeft = lp;
        for (const ev of events) {
          sendToolEvent(d.index, ev, ev.type === "content" ? lpLeft : "null");
          if (ev.type === "content") lpLeft = "null";
        }
        if (!started[d.index] && d.finishReason) sendContent(d.index, "", "null");
      } else {
        sendContent(d.index, d.text, lp);
      }
      if (finish) {
        lastFinish = finish;
        sse.data(choiceChunk(d.index, "{}", "null", `"${finish}"`));
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
  sse = new SseWriter(() => gen.cancel(), conn.outgoing, { "x-request-id": conn.requestId }, { pause: () => gen.pause(), resume: () => gen.resume(), ...ctx.streamBounds });
  conn.signal.addEventListener("abort", () => gen.cancel(), { once: true });
  return sse.response(RESPONSE_ALREADY_SENT);
}
