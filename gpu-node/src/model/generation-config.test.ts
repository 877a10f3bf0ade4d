import { describe, expect, it } from "vitest";
import { ModelDirError } from "./errors.js";
import { parseGenerationConfig } from "./generation-config.js";

const FILE = "/m/generation_config.json";
const config = { eosTokenIds: [128001, 128009], vocabSize: 128256 };

describe("parseGenerationConfig", () => {
  it("keeps only the fields present, and unions eos ids (config.json first)", () => {
    expect(parseGenerationConfig({ bos_token_id: 128000, eos_token_id: [128001, 128008, 128009], do_sample: true, temperature: 0.6, top_p: 0.9 }, FILE, config)).toEqual({
      eosTokenIds: [128001, 128009, 128008],
      temperature: 0.6,
      topP: 0.9,
      doSample: true,
    });
    expect(parseGenerationConfig({}, FILE, config)).toEqual({ eosTokenIds: [128001, 128009] });
    expect(parseGenerationConfig({ eos_token_id: 7, top_k: 50, min_p: 0.05, repetition_penalty: 1.1, max_new_tokens: 4096 }, FILE, config)).toEqual({
      eosTokenIds: [128001, 128009, 7],
      topK: 50,
      minP: 0.05,
      repetitionPenalty: 1.1,
      maxNewTokens: 4096,
    });
  });

  it("refuses bad values with a one-line error naming the file and field", () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ temperature: "hot" }, /temperature "hot" must be a number >= 0/],
      [{ top_p: 0 }, /top_p 0 must be a number in \(0, 1\]/],
      [{ top_k: 1.5 }, /top_k 1.5 must be an integer >= 0/],
      [{ max_new_tokens: 0 }, /max_new_tokens 0 must be a positive integer/],
      [{ eos_token_id: [1, "x"] }, /eos_token_id \[1,"x"\] must be a token id/],
      [{ do_sample: "yes" }, /do_sample "yes" must be true or false/],
    ];
    for (const [json, message] of cases) {
      expect(() => parseGenerationConfig(json, FILE, config)).toThrow(ModelDirError);
      expect(() => parseGenerationConfig(json, FILE, config)).toThrow(message);
    }
    expect(() => parseGenerationConfig([], FILE, config)).toThrow(`${FILE}: expected a JSON object, got []`);
  });
});
