import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { chatCompletionRequestSchema, responseCreateRequestSchema } from "@seventy/sdk/protocol";
import { admit, observeRequest } from "../admission.js";
import { planChat, type ChatPlan } from "../chat-route.js";
import type { NodeContext, RequestConn } from "../context.js";
import { Generation, type FinishReason, type GenerationUsage } from "../generation.js";
import { HttpError, USAGE_HEADER } from "../http-error.js";
import { SseWriter } from "../sse.js";
import { ToolCallStream, type ToolCallEvent } from "../tool-call-stream.js";
import { initialResponse, ResponseBuilder } from "./builder.js";
import { toChatParams } from "./to-chat.js";

/** Chat parameter names in errors from the shared pipeline → the Responses names. */
const PARAM_NAMES: Record<string, string> = {
  messages: "input",
  max_completion_tokens: "max_output_tokens",
  max_tokens: "max_output_tokens",
  response_format: "text.format",
};

function renamed(err: unknown): unknown {
  if (!(err instanceof HttpError) || !err.opts.param) return err;
  const [, head, rest] = /^([a-z_]+)(.*)$/.exec(err.opts.param) ?? [];
  const name = PARAM_NAMES[head ?? ""];
  if (!name) return err;
  // A message index is not an input index (instructions and joined calls shift it): name the field.
  const param = name === "input" ? name : name + rest;
  return new HttpError(err.status, err.message.replaceAll(`'${err.opts.param}'`, `'${param}'`), { ...err.opts, param });
}

/**
 * POST /v1/responses: OpenAI's Responses API on this node. The request becomes the equivalent chat
 * request and runs through the chat pipeline (validate → render → plan), then one Generation whose
 * deltas a ResponseBuilder turns into output items — and, streaming, into Responses events.
 *
 * A node stores nothing: `store` is accepted (the edge keeps stored responses), and
 * `previous_response_id` alone is a 400 here, because only the edge knows earlier responses; the
 * edge sends it together with `previous_items`, the conversation it resolved.
 */
export async function responses(ctx: NodeContext, body: unknown, conn: RequestConn): Promise<Response> {
  const parsed = responseCreateRequestSchema.safeParse(body);
  if (!parsed.success) throw HttpError.fromZod(parsed.error);
  const req = parsed.data;
  if (req.previous_response_id !== undefined && req.previous_items === undefined) {
    throw new HttpError(
      400,
      "This gpu-node does not store responses, so 'previous_response_id' cannot be resolved here. Send it through the edge, or send the whole conversation as 'input' with 'store': false.",
      { param: "previous_response_id", code: "previous_response_not_supported" },
    );
  }
  const id = `resp_${crypto.randomUUID().replace(/-/g, "")}`;
  let plan: ChatPlan;
  try {
    const chat = chatCompletionRequestSchema.safeParse(toChatParams(req));
    if (!chat.success) throw HttpError.fromZod(chat.error);
    plan = await planChat(ctx, chat.data, id, conn);
  } catch (err) {
    throw renamed(err);
  }
  const base = initialResponse(id, ctx.modelName, req);
  const { spec, tools } = plan;
  const observe = observeRequest(ctx, spec.promptTokenIds.length);

  // With tools, the text goes through a ToolCallStream as in chat: content as soon as it cannot be a
  // call, a function_call item as soon as its name is known, then its arguments piece by piece.
  const toolStream = tools.length > 0 ? new ToolCallStream(tools, plan.makeToolCallId) : null;
  const apply = (events: ToolCallEvent[]) => {
    for (const ev of events) {
      if (ev.type === "content") builder.appendText(ev.text);
      else if (ev.type === "call") builder.startFunctionCall(ev.id, ev.name);
      else builder.appendArguments(ev.index, ev.text);
    }
  };
  // Stays null when the generation was stopped from outside (the client left, the node shut down).
  let finish: FinishReason | null = null;
  let sse: SseWriter | null = null;
  const builder = new ResponseBuilder(base, req.stream ? (type, json) => sse?.event(type, json) : null);

  let settle!: (r: { usage: GenerationUsage } | { error: Error }) => void;
  const ended = new Promise<{ usage: GenerationUsage } | { error: Error }>((resolve) => (settle = resolve));
  const gen = new Generation(ctx.scheduler, spec, ctx.makeDetokenizer, {
    onToken: observe.onToken,
    onDelta(d) {
      if (toolStream) {
        apply(toolStream.push(d.text));
        if (d.finishReason) apply(toolStream.finish().events);
      } else {
        builder.appendText(d.text);
      }
      if (d.finishReason) finish = d.finishReason;
    },
    onDone: (usage) => settle({ usage }),
    onError: (error) => settle({ error }),
  });

  const complete = (usage: GenerationUsage, reason: FinishReason) => {
    observe.done(builder.hasFunctionCalls ? "tool_calls" : reason);
    return builder.finish(reason, usage);
  };
  const STOPPED = "The request was stopped before it finished (cancelled, or the node is shutting down).";

  admit(gen);
  conn.signal.addEventListener("abort", () => gen.cancel(), { once: true });

  if (req.stream) {
    const writer = new SseWriter(() => gen.cancel(), conn.outgoing, { "x-request-id": conn.requestId }, {
      pause: () => gen.pause(),
      resume: () => gen.resume(),
      ...ctx.streamBounds,
    });
    sse = writer;
    builder.start();
    void ended.then((end) => {
      if (writer.isClosed) return observe.done("abort");
      if ("error" in end) {
        observe.done("error");
        // What was generated before the failure, so the edge meters the truth.
        builder.fail(`Generation failed: ${end.error.message}`, gen.usedSoFar());
      } else if (finish === null) {
        observe.done("abort");
        builder.fail(STOPPED, end.usage);
      } else {
        complete(end.usage, finish);
      }
      writer.close();
    });
    return writer.response(RESPONSE_ALREADY_SENT);
  }

  const end = await ended;
  if ("error" in end) {
    observe.done("error");
    throw new HttpError(500, `Generation failed: ${end.error.message}`, { code: "engine_error", usage: gen.usedSoFar() });
  }
  if (finish === null) {
    observe.done("abort");
    throw new HttpError(503, STOPPED, { code: "request_aborted", usage: end.usage });
  }
  const u = end.usage;
  return new Response(JSON.stringify(complete(u, finish)), {
    headers: { "content-type": "application/json", [USAGE_HEADER]: `${u.promptTokens},${u.completionTokens},${u.cachedTokens}` },
  });
}
