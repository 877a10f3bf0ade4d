import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { basename, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelDirError } from "./errors.js";
import { openModelDir } from "./model-dir.js";
import type { ModelDir } from "./model-dir.js";
import { TINY_MODEL_VERSION, defaultTinyModelDir, ensureTinyModel, makeTinyModel } from "./tiny-model.js";
import { LlamaTokenizer } from "./tokenizer.js";
import type { LoadProgress } from "./types.js";

const tmp = mkdtempSync(join(tmpdir(), "seventy-modeldir-"));
let dir: string;
let model: ModelDir;
let openMs = 0;
beforeAll(async () => {
  dir = await makeTinyModel({ outDir: join(tmp, "tiny-llama") });
  const t0 = performance.now();
  model = await openModelDir(dir);
  openMs = performance.now() - t0;
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function copyModel(name: string): string {
  const to = join(tmp, name);
  cpSync(dir, to, { recursive: true });
  return to;
}

async function openError(path: string, withSharedTokenizer = true): Promise<ModelDirError> {
  const e = await openModelDir(path, withSharedTokenizer ? { tokenizer: model.tokenizer } : {}).then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ModelDirError);
  expect((e as Error).message).not.toContain("\n");
  return e as ModelDirError;
}

describe("openModelDir", () => {
  it("opens the tiny model: config, generation defaults, tokenizer, tensors", async () => {
    console.log(`openModelDir (tiny, tokenizer included): ${openMs.toFixed(0)} ms`);
    expect(model.dir).toBe(dir);
    expect(model.modelName).toBe("tiny-llama");
    expect(model.config.hiddenSize).toBe(64);
    expect(model.config.ropeScaling?.ropeType).toBe("llama3");
    expect(model.generation).toEqual({ eosTokenIds: [128001, 128008, 128009], temperature: 0.6, topP: 0.9, doSample: true });
    expect(model.tokenizer.encode("Hello world", { addSpecialTokens: false })).toEqual([9906, 1917]);
    expect(model.tensors.size).toBe(21);
    const events: LoadProgress[] = [];
    const opened = await openModelDir(dir, { modelName: "served-name", tokenizer: model.tokenizer, onProgress: (p) => events.push(p) });
    expect(opened.modelName).toBe("served-name");
    const w = await opened.loadTensorsF32(["model.norm.weight"]);
    expect(w.get("model.norm.weight")!.length).toBe(64);
    expect(events.at(-1)).toEqual({ bytesDone: 128, bytesTotal: 128, file: join(dir, "model.safetensors") });
  });

  it("writes a config transformers can load as LlamaForCausalLM, and the 3.1 tokenizer files", () => {
    const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
    expect(config).toMatchObject({
      architectures: ["LlamaForCausalLM"],
      model_type: "llama",
      hidden_size: 64,
      intermediate_size: 176,
      num_hidden_layers: 2,
      num_attention_heads: 4,
      num_key_value_heads: 2,
      head_dim: 16,
      vocab_size: 128256,
      rms_norm_eps: 1e-5,
      rope_theta: 500000,
      rope_scaling: { rope_type: "llama3", factor: 8, low_freq_factor: 1, high_freq_factor: 4, original_max_position_embeddings: 8192 },
      max_position_embeddings: 131072,
      tie_word_embeddings: false,
      bos_token_id: 128000,
      eos_token_id: [128001, 128008, 128009],
      torch_dtype: "bfloat16",
      hidden_act: "silu",
    });
    expect(JSON.parse(readFileSync(join(dir, "generation_config.json"), "utf8"))).toMatchObject({ do_sample: true, temperature: 0.6, top_p: 0.9, eos_token_id: [128001, 128008, 128009] });
    const tc = JSON.parse(readFileSync(join(dir, "tokenizer_config.json"), "utf8"));
    expect([tc.bos_token, tc.eos_token, tc.clean_up_tokenization_spaces]).toEqual(["<|begin_of_text|>", "<|eot_id|>", false]);
    expect([128004, 128008, 128010].map((id) => tc.added_tokens_decoder[id].content)).toEqual(["<|finetune_right_pad_id|>", "<|eom_id|>", "<|python_tag|>"]);
    expect(tc.chat_template).toBe(readFileSync(new URL("../../assets/llama-3.1-chat-template.jinja", import.meta.url), "utf8"));
    const tj = JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8"));
    expect(tj.added_tokens.find((t: { id: number }) => t.id === 128010).content).toBe("<|python_tag|>");
    // No temp directories are left next to it.
    expect(readdirSync(tmp).filter((f) => f.includes(".tmp-"))).toEqual([]);
  });

  it("one-line errors naming the path for a missing directory or file", async () => {
    expect((await openError(join(tmp, "nope"))).message).toBe(`${join(tmp, "nope")}: model directory not found`);
    const file = join(tmp, "a-file");
    writeFileSync(file, "");
    expect((await openError(file)).message).toMatch(/is not a directory/);

    const noConfig = copyModel("no-config");
    rmSync(join(noConfig, "config.json"));
    expect((await openError(noConfig)).message).toBe(`${join(noConfig, "config.json")}: file not found`);

    const noTokenizer = copyModel("no-tokenizer");
    rmSync(join(noTokenizer, "tokenizer.json"));
    expect((await openError(noTokenizer, false)).message).toBe(`${join(noTokenizer, "tokenizer.json")}: file not found`);

    const noWeights = copyModel("no-weights");
    rmSync(join(noWeights, "model.safetensors"));
    expect((await openError(noWeights)).message).toMatch(/no weights: expected model\.safetensors or model\.safetensors\.index\.json/);
  });

  it("refuses a config that does not match the weights, or bad generation defaults", async () => {
    const wrong = copyModel("wrong-shape");
    const config = JSON.parse(readFileSync(join(wrong, "config.json"), "utf8"));
    writeFileSync(join(wrong, "config.json"), JSON.stringify({ ...config, num_key_value_heads: 4 }));
    expect((await openError(wrong)).message).toBe(
      `${join(wrong, "model.safetensors")}: tensor model.layers.0.self_attn.k_proj.weight has shape [32, 64], expected [64, 64] from config.json`,
    );
    writeFileSync(join(wrong, "config.json"), JSON.stringify({ ...config, rope_scaling: { rope_type: "yarn", factor: 4 } }));
    expect((await openError(wrong)).message).toMatch(/config\.json: rope_scaling\.rope_type "yarn" is not supported/);
    writeFileSync(join(wrong, "config.json"), JSON.stringify(config));
    writeFileSync(join(wrong, "generation_config.json"), JSON.stringify({ temperature: -1 }));
    expect((await openError(wrong)).message).toBe(`${join(wrong, "generation_config.json")}: temperature -1 must be a number >= 0`);
    rmSync(join(wrong, "generation_config.json"));
    expect((await openModelDir(wrong, { tokenizer: model.tokenizer })).generation).toEqual({ eosTokenIds: [128001, 128008, 128009] });
  });

  it("a chat_template.jinja file overrides tokenizer_config's template", async () => {
    // A two-token tokenizer.json keeps this test from parsing the 9 MB one again.
    const own = join(tmp, "own-template");
    mkdirSync(own);
    const tokenizerJson = { added_tokens: [], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, model: { type: "BPE", vocab: { a: 0, b: 1 }, merges: [] } };
    writeFileSync(join(own, "tokenizer.json"), JSON.stringify(tokenizerJson));
    writeFileSync(join(own, "tokenizer_config.json"), JSON.stringify({ chat_template: "from tokenizer_config" }));
    expect((await LlamaTokenizer.fromDir(own)).applyChatTemplate([])).toBe("from tokenizer_config");
    writeFileSync(join(own, "chat_template.jinja"), "{% for m in messages %}[{{ m.role }}]{% endfor %}");
    const tok = await LlamaTokenizer.fromDir(own);
    expect(tok.applyChatTemplate([{ role: "user", content: "x" }])).toBe("[user]");
    expect(tok.fastEncode).toBe(false);
    expect(tok.encode("ab")).toEqual([0, 1]);
  });
});

describe("tiny model files", () => {
  it("defaultTinyModelDir follows SEVENTY_CACHE_DIR, then XDG_CACHE_HOME, then ~/.cache", () => {
    expect(defaultTinyModelDir({ SEVENTY_CACHE_DIR: "/c", XDG_CACHE_HOME: "/x" })).toBe("/c/tiny-llama-3.1");
    expect(defaultTinyModelDir({ XDG_CACHE_HOME: "/x" })).toBe("/x/seventy/tiny-llama-3.1");
    expect(defaultTinyModelDir({})).toBe(join(homedir(), ".cache", "seventy", "tiny-llama-3.1"));
  });

  it("ensureTinyModel builds once, even with concurrent callers, then reuses", async () => {
    const target = join(tmp, "cache", "tiny-llama-3.1");
    const logs: string[] = [];
    const [a, b] = await Promise.all([ensureTinyModel({ dir: target, log: (l) => logs.push(l) }), ensureTinyModel({ dir: target })]);
    expect(a).toBe(target);
    expect(b).toBe(target);
    expect(logs).toEqual([`creating the tiny test model in ${target}`]);
    const marker = JSON.parse(readFileSync(join(target, ".seventy-tiny-model.json"), "utf8"));
    expect(marker.version).toBe(TINY_MODEL_VERSION);
    const mtime = statSync(join(target, "model.safetensors")).mtimeMs;
    const again: string[] = [];
    expect(await ensureTinyModel({ dir: target, log: (l) => again.push(l) })).toBe(target);
    expect(again).toEqual([]);
    expect(statSync(join(target, "model.safetensors")).mtimeMs).toBe(mtime);
    expect(readdirSync(join(tmp, "cache"))).toEqual(["tiny-llama-3.1"]);
  });

  it("makeTinyModel never leaves a half-written directory and refuses to clobber one", async () => {
    const out = join(tmp, "half");
    await expect(makeTinyModel({ outDir: out, shards: 0 })).rejects.toThrow(/shards 0/);
    await expect(makeTinyModel({ outDir: out, vocabSize: 1000 })).rejects.toThrow(/vocabSize 1000/);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(tmp).filter((f) => f.startsWith(".half"))).toEqual([]);

    mkdirSync(join(tmp, "occupied"));
    writeFileSync(join(tmp, "occupied", "keep.txt"), "x");
    await expect(makeTinyModel({ outDir: join(tmp, "occupied"), numHiddenLayers: 1 })).rejects.toThrow(/exists and is not empty/);
    expect(readdirSync(join(tmp, "occupied"))).toEqual(["keep.txt"]);
    expect(basename(await makeTinyModel({ outDir: join(tmp, "occupied"), numHiddenLayers: 1, overwrite: true }))).toBe("occupied");
    expect(existsSync(join(tmp, "occupied", "keep.txt"))).toBe(false);
    expect(existsSync(join(tmp, "occupied", "model.safetensors"))).toBe(true);
  });
});
