import { access } from "node:fs/promises";
import { isObject, parseEosTokenIds, readJsonFile } from "./config.js";
import { ModelDirError, describeValue } from "./errors.js";
import type { GenerationDefaults, LlamaConfig } from "./types.js";

/**
 * Parses `generation_config.json`. Only the fields present become defaults (as vLLM's
 * `--generation-config auto` does), so a request's unset parameters fall back to the model
 * author's choice. Stop ids are config.json's `eos_token_id` followed by any extra ids here
 * (Llama 3.1 Instruct lists 128001, 128008 and 128009).
 */
export function parseGenerationConfig(json: unknown, file: string, config: Pick<LlamaConfig, "eosTokenIds" | "vocabSize">): GenerationDefaults {
  if (!isObject(json)) throw new ModelDirError(file, `expected a JSON object, got ${describeValue(json)}`);
  const own = parseEosTokenIds(json.eos_token_id, file, "eos_token_id", config.vocabSize) ?? [];
  const out: GenerationDefaults = { eosTokenIds: [...new Set([...config.eosTokenIds, ...own])] };

  const num = (key: string, ok: (v: number) => boolean, want: string): number | undefined => {
    const v = json[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isFinite(v) || !ok(v)) throw new ModelDirError(file, `${key} ${describeValue(v)} must be ${want}`, { field: key });
    return v;
  };
  const temperature = num("temperature", (v) => v >= 0, "a number >= 0");
  const topP = num("top_p", (v) => v > 0 && v <= 1, "a number in (0, 1]");
  const topK = num("top_k", (v) => Number.isInteger(v) && v >= 0, "an integer >= 0");
  const minP = num("min_p", (v) => v >= 0 && v <= 1, "a number in [0, 1]");
  const repetitionPenalty = num("repetition_penalty", (v) => v > 0, "a number > 0");
  const maxNewTokens = num("max_new_tokens", (v) => Number.isInteger(v) && v > 0, "a positive integer");
  if (temperature !== undefined) out.temperature = temperature;
  if (topP !== undefined) out.topP = topP;
  if (topK !== undefined) out.topK = topK;
  if (minP !== undefined) out.minP = minP;
  if (repetitionPenalty !== undefined) out.repetitionPenalty = repetitionPenalty;
  if (maxNewTokens !== undefined) out.maxNewTokens = maxNewTokens;
  const doSample = json.do_sample;
  if (doSample !== undefined && doSample !== null) {
    if (typeof doSample !== "boolean") throw new ModelDirError(file, `do_sample ${describeValue(doSample)} must be true or false`, { field: "do_sample" });
    out.doSample = doSample;
  }
  return out;
}

/** Reads `file` when it exists; a model without generation_config.json gets config.json's eos ids only. */
export async function readGenerationConfig(file: string, config: Pick<LlamaConfig, "eosTokenIds" | "vocabSize">): Promise<GenerationDefaults> {
  try {
    await access(file);
  } catch {
    return { eosTokenIds: [...config.eosTokenIds] };
  }
  return parseGenerationConfig(await readJsonFile(file), file, config);
}
