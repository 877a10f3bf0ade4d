import { completionRequestSchema, type Completion } from "@seventy/sdk/protocol";
import { admit, observeRequest } from "./admission.js";
import { usageJson } from "./chat-route.js";
import type { NodeContext, RequestConn } from "./context.js";
import { RESPONSE_ALREADY_SENT } from "@hono/node-server/utils/response";
import { Generation, type FinishReason, type GenerationUsage, type TokenLogprobInfo } from "./generation.js";
import { HttpError } from "./http-error.js";
import { prepareConstraints } from "./constraint-request.js";
import { checkModel, newId, resolveMaxTokens, samplingParams } from "./request-prep.js";
import { encodeTextPrompt } from "./prompt.js";
import { checkLogprobVolume, checkSequences, checkStopStrings } from "./request-limits.js";
import { SseWriter } from "./sse.js";
import { tokenText } from "./token-text.js";

/** Legacy completions logprobs: parallel arrays, top_logprobs as {token: logprob} maps. */
function legacyLogprobs(ctx: NodeContext, infos: TokenLogprobInfo[], startOffset: number) {
  const tokens: string[] = [];
  const tokenLogprobs: number[] = [];
  const top: Record<string, number>[] = [];
  const offsets: number[] = [];
  let offset = startOffset;
  for (const info of infos) {
    const t = tokenText(ctx, info.tokenId).text;
    tokens.push(t);
    tokenLogprobs.push(info.logprob);
    const map: Record<string, number> = {};
    for (const tl of info.top) map[tokenText(ctx, tl.tokenId).text] = tl.logprob;
    top.push(map);
    offsets.push(offset);
    offset += t.length;
  }
  return { tokens, token_logprobs: tokenLogprobs, top_logprobs: top, text_offset: offsets };
}

export async function completions(ctx: NodeContext, body: unknown, conn: RequestConn): Promise<Response> {
  const parsed = completionRequestSchema.safeParse(body);
  if (!parsed.success) {
    throw HttpError.fromZod(parsed.error);
  }
  const req = parsed.data;
  checkModel(ctx, req.model);
  if (req.suffix !== undefined) {
    throw new HttpError(400, "'suffix' is not supported by this model.", { param: "suffix", code: "unsupported_value" });
  }
  if (req.echo && req.logprobs !== undefined) {
    throw new HttpError(400, "'echo' together with 'logprobs' is not supported.", { param: "echo", code: "unsupported_value" });
  }

  const p = req.prompt;
  const numPrompts = typeof p === "string" || typeof p[0] === "number" ? 1 : p.length;
  checkSequences(ctx, numPrompts, req.n ?? 1);
  const stops = checkStopStrings(ctx, req.stop);

  // Normalise the four prompt forms to a list of token id lists (strings get the BOS token, as HF does).
  const prompts: number[][] = [];
  const promptTexts: string[] = [];
  if (typeof p === "string") prompts.push(await encodeTextPrompt(ctx, p, true, "prompt"));
  else if (typeof p[0] === "string") {
    const texts = p as string[];
    prompts.push(...(await Promise.all(texts.map((s, i) => encodeTextPrompt(ctx, s, true, texts.length > 1 ? `prompt[${i}]` : "prompt")))));
  } else if (typeof p[0] === "number") prompts.push(p as number[]);
  else for (const ids of p as number[][]) prompts.push(ids);
  for (const [i, ids] of prompts.entries()) {
    if (ids.length === 0) throw new HttpError(400, "The prompt must not be empty.", { param: "prompt", code: "invalid_value" });
    const bad = ids.find((id) => id >= ctx.vocabSize);
    if (bad !== undefined) {
      throw new HttpError(400, `Token id ${bad} is out of range (vocabulary size ${ctx.vocabSize}).`, {
        param: prompts.length > 1 ? `prompt[${i}]` : "prompt",
        code: "invalid_value",
      });
    }
    promptTexts.push(req.echo ? ctx.tokenizer.decode(ids, { skipSpecialTokens: true }) : "");
  }
  const n = req.n ?? 1;
  const maxTokensList = prompts.map((ids) => resolveMaxTokens(ctx, ids.length, req.max_tokens, "max_tokens", "prompt"));
  if (req.logprobs !== undefined) checkLogprobVolume(ctx, prompts.length * n, req.logprobs, Math.max(...maxTokensList), "logprobs");
  const id = newId("cmpl");
  const created = Math.floor(Date.now() / 1000);
  const wantLogprobs = req.logprobs !== undefined;
  const gens: Generation[] = [];
  const usage: GenerationUsage = { promptTokens: 0, completionTokens: 0, cachedTokens: 0 };
  let pending = prompts.length;
  let failure: Error | null = null;
  const total = prompts.length * n;
  const texts = new Array<string>(total).fill("");
  const lps: TokenLogprobInfo[][] = Array.from({ length: total }, () => []);
  const finish = new Array<FinishReason>(total).fill("length");
  const offsets = new Array<number>(total).fill(0);

  let resolveAll!: () => void;
  let rejectAll!: (e: Error) => void;
  const all = new Promise<void>((res, rej) => {
    resolveAll = res;
    rejectAll = rej;
  });
  const stream = req.stream === true;
  // Created after admission succeeds (below); events are always delivered after this function returns.
  let sse: SseWriter | null = null;
  const head = `{"id":"${id}","object":"text_completion","created":${created},"model":${JSON.stringify(ctx.modelName)},"system_fingerprint":null,"choices":[`;

  // Last before the Generations, which release the grammars' memory.
  const { constraints } = await prepareConstraints(ctx, req, total);
  prompts.forEach((ids, pi) => {
    const observe = observeRequest(ctx, ids.length);
    const gen = new Generation(
      ctx.scheduler,
      {
        requestId: `${id}-${pi}`,
        promptTokenIds: ids,
        params: samplingParams(ctx, req, wantLogprobs ? req.logprobs! : -1),
        maxTokens: maxTokensList[pi]!,
        stopTokenIds: req.ignore_eos ? [] : ctx.eosTokenIds,
        stopStrings: stops,
        wantLogprobs,
        ...conn.tenant,
        ...(constraints ? { constraints: constraints.slice(pi * n, pi * n + n) } : {}),
      },
      ctx.makeDetokenizer,
      {
        onToken: observe.onToken,
        onDelta(d) {
          const index = pi * n + d.index;
          let text = d.text;
          if (req.echo && texts[index] === "" && promptTexts[pi]) text = promptTexts[pi] + text;
          if (d.finishReason) finish[index] = d.finishReason;
          if (sse) {
            const lp = wantLogprobs && d.logprobs.length ? JSON.stringify(legacyLogprobs(ctx, d.logprobs, offsets[index]!)) : "null";
            offsets[index]! += text.length;
            texts[index] += text;
            if (text.length > 0 || d.logprobs.length > 0 || d.finishReason) {
              sse.data(`${head}{"index":${index},"text":${JSON.stringify(text)},"logprobs":${lp},"finish_reason":${d.finishReason ? `"${d.finishReason}"` : "null"}}]}`);
            }
          } else {
            texts[index] += text;
            lps[index]!.push(...d.logprobs);
          }
        },
        onDone(u) {
          observe.done(finish[pi * n] ?? "length");
          usage.promptTokens += u.promptTokens;
          usage.completionTokens += u.completionTokens;
          usage.cachedTokens += u.cachedTokens;
          if (--pending === 0) resolveAll();
        },
        onError(err) {
          observe.done("error");
          if (!failure) {
            failure = err;
            gens.forEach((g) => g.cancel());
            rejectAll(err);
          }
        },
      },
    );
    gens.push(gen);
  });
  try {
    for (const g of gens) admit(g);
  } catch (err) {
    gens.forEach((g) => g.cancel());
    throw err;
  }
  conn.signal.addEventListener("abort", () => gens.forEach((g) => g.cancel()), { once: true });

  if (stream) {
    const writer = new SseWriter(() => gens.forEach((g) => g.cancel()), conn.outgoing, { "x-request-id": conn.requestId }, {
      pause: () => gens.forEach((g) => g.pause()),
      resume: () => gens.forEach((g) => g.resume()),
      ...ctx.streamBounds,
    });
    sse = writer;
    all.then(
      () => {
        if (req.stream_options?.include_usage) {
          writer.data(`${head}],"usage":${JSON.stringify(usageJson(usage))}}`);
        }
        writer.done();
      },
      (err: Error) => {
        writer.fail(err);
      },
    );
    return writer.response(RESPONSE_ALREADY_SENT);
  }
  try {
    await all;
  } catch (err) {
    throw new HttpError(500, `Generation failed: ${(err as Error).message}`, { code: "engine_error" });
  }
  const out: Completion = {
    id,
    object: "text_completion",
    created,
    model: ctx.modelName,
    system_fingerprint: null,
    choices: texts.map((text, index) => ({
      index,
      text,
      logprobs: wantLogprobs ? legacyLogprobs(ctx, lps[index]!, 0) : null,
      finish_reason: finish[index]!,
    })),
    usage: usageJson(usage),
  };
  return new Response(JSON.stringify(out), { headers: { "content-type": "application/json" } });
}
