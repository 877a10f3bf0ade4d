import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ModelDirError } from "./errors.js";
import { writeSafetensors } from "./safetensors.js";
import { makeTinyModel, tinyLlamaConfig } from "./tiny-model.js";
import type { LoadProgress, TensorInfo } from "./types.js";
import { listTensors, llamaTensorShapes, loadTensorsF32, validateLlamaTensors } from "./weights.js";

const tmp = mkdtempSync(join(tmpdir(), "seventy-weights-"));
let single: string;
let sharded: string;
beforeAll(async () => {
  [single, sharded] = await Promise.all([
    makeTinyModel({ outDir: join(tmp, "single"), seed: 7 }),
    makeTinyModel({ outDir: join(tmp, "sharded"), seed: 7, shards: 3 }),
  ]);
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function rejection(p: Promise<unknown>): Promise<ModelDirError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(ModelDirError);
  expect((e as Error).message).not.toContain("\n");
  return e as ModelDirError;
}

function copyModel(from: string, name: string): string {
  const to = join(tmp, name);
  cpSync(from, to, { recursive: true });
  return to;
}

describe("listTensors / loadTensorsF32", () => {
  it("a sharded directory lists and loads exactly the tensors of the single-file one", async () => {
    const a = await listTensors(single);
    const b = await listTensors(sharded);
    const summary = (m: Map<string, TensorInfo>) => [...m.values()].map((t) => [t.name, t.dtype, t.shape]).sort();
    expect(summary(b)).toEqual(summary(a));
    expect(new Set([...b.values()].map((t) => t.file)).size).toBe(3);
    expect([...b.values()].every((t) => /model-0000[1-3]-of-00003\.safetensors$/.test(t.file))).toBe(true);

    const wa = await loadTensorsF32(a);
    const wb = await loadTensorsF32(b);
    expect(wb.size).toBe(wa.size);
    for (const [name, x] of wa) expect(Buffer.from(wb.get(name)!.buffer).equals(Buffer.from(x.buffer)), name).toBe(true);

    const index = JSON.parse(readFileSync(join(sharded, "model.safetensors.index.json"), "utf8"));
    expect(index.metadata.total_size).toBe([...a.values()].reduce((s, t) => s + t.byteLength, 0));
    expect(Object.keys(index.weight_map)).toEqual(Object.keys(index.weight_map).sort());
  });

  it("loads a subset in the order asked, and reports progress by bytes", async () => {
    const infos = await listTensors(sharded);
    const names = ["model.norm.weight", "model.layers.1.mlp.down_proj.weight", "model.embed_tokens.weight"];
    const events: LoadProgress[] = [];
    const w = await loadTensorsF32(infos, names, (p) => events.push(p), { chunkBytes: 1 << 20 });
    expect([...w.keys()]).toEqual(names);
    const total = names.reduce((s, n) => s + infos.get(n)!.byteLength, 0);
    expect(events.length).toBeGreaterThan(names.length); // the embedding spans several 1 MiB chunks
    expect(events.every((p, i) => p.bytesTotal === total && (i === 0 || p.bytesDone > events[i - 1]!.bytesDone))).toBe(true);
    expect(events.at(-1)!.bytesDone).toBe(total);
    const all = await loadTensorsF32(infos);
    for (const n of names) expect(Buffer.from(w.get(n)!.buffer).equals(Buffer.from(all.get(n)!.buffer)), n).toBe(true);
    await expect(loadTensorsF32(infos, ["nope"])).rejects.toThrow(/no tensor named nope/);
  });

  it("converts across chunk boundaries for every dtype (tiny chunks, odd sizes)", async () => {
    const dir = join(tmp, "chunks");
    mkdirSync(dir);
    const vals = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => ((i * 37 + k) % 101) / 8 - 6);
    const file = join(dir, "model.safetensors");
    await writeSafetensors(file, [
      { name: "bf", dtype: "BF16", shape: [3, 333], data: vals(999, 1) },
      { name: "hf", dtype: "F16", shape: [501], data: vals(501, 2) },
      { name: "f", dtype: "F32", shape: [7, 11], data: vals(77, 3) },
    ]);
    const infos = await listTensors(dir);
    const w = await loadTensorsF32(infos, undefined, undefined, { chunkBytes: 10 });
    expect([...w.get("bf")!]).toEqual([...vals(999, 1)]); // these values are exact in bf16 and f16
    expect([...w.get("hf")!]).toEqual([...vals(501, 2)]);
    expect([...w.get("f")!]).toEqual([...vals(77, 3)]);
  });

  it("same seed → same bytes; another seed → other weights", async () => {
    const again = await makeTinyModel({ outDir: join(tmp, "again"), seed: 7, numHiddenLayers: 1 });
    const other = await makeTinyModel({ outDir: join(tmp, "other"), seed: 8, numHiddenLayers: 1 });
    const norm = async (dir: string) => (await loadTensorsF32(await listTensors(dir), ["model.layers.0.self_attn.q_proj.weight"])).values().next().value!;
    const [s, a, o] = await Promise.all([norm(single), norm(again), norm(other)]);
    const same = (x: Float32Array, y: Float32Array) => Buffer.from(x.buffer).equals(Buffer.from(y.buffer));
    expect(same(a, s)).toBe(true); // per-tensor streams: the layer count does not change layer 0
    expect(same(o, s)).toBe(false);
    const std = Math.sqrt(s.reduce((acc, v) => acc + v * v, 0) / s.length);
    expect(std).toBeGreaterThan(0.1);
    expect(std).toBeLessThan(0.15); // 1/sqrt(64)
  });

  it("a shard listed in the index but missing on disk", async () => {
    const dir = copyModel(sharded, "missing-shard");
    rmSync(join(dir, "model-00002-of-00003.safetensors"));
    const e = await rejection(listTensors(dir));
    expect(e.message).toBe(`${join(dir, "model-00002-of-00003.safetensors")}: shard listed in model.safetensors.index.json not found`);
  });

  it("index and shards that disagree", async () => {
    const dir = copyModel(sharded, "bad-index");
    const indexPath = join(dir, "model.safetensors.index.json");
    const index = JSON.parse(readFileSync(indexPath, "utf8"));
    const good = JSON.stringify(index);

    index.weight_map["model.extra.weight"] = "model-00001-of-00003.safetensors";
    writeFileSync(indexPath, JSON.stringify(index));
    expect((await rejection(listTensors(dir))).message).toMatch(/weight_map\.model\.extra\.weight names shard model-00001-of-00003\.safetensors but that shard has no tensor model\.extra\.weight/);

    const i2 = JSON.parse(good);
    delete i2.weight_map["model.norm.weight"];
    writeFileSync(indexPath, JSON.stringify(i2));
    expect((await rejection(listTensors(dir))).message).toMatch(/tensor model\.norm\.weight is in shard model-0000\d-of-00003\.safetensors but missing from weight_map/);

    const i3 = JSON.parse(good);
    const wrong = i3.weight_map["model.embed_tokens.weight"] === "model-00001-of-00003.safetensors" ? "model-00002-of-00003.safetensors" : "model-00001-of-00003.safetensors";
    i3.weight_map["model.embed_tokens.weight"] = wrong;
    writeFileSync(indexPath, JSON.stringify(i3));
    // Either "...but the tensor is in <other>" or, when that left a shard unreferenced, "...but that shard has no tensor".
    expect((await rejection(listTensors(dir))).message).toMatch(/weight_map\.model\.embed_tokens\.weight names shard "?model-0000\d-of-00003\.safetensors"? but/);

    writeFileSync(indexPath, JSON.stringify({ weight_map: { a: "../../etc/passwd" } }));
    expect((await rejection(listTensors(dir))).message).toMatch(/must be a file name in the model directory/);
    writeFileSync(indexPath, "{");
    expect((await rejection(listTensors(dir))).message).toMatch(/model\.safetensors\.index\.json: invalid JSON/);
  });

  it("a directory without safetensors weights", async () => {
    const dir = join(tmp, "bin-only");
    mkdirSync(dir);
    writeFileSync(join(dir, "pytorch_model.bin"), "");
    expect((await rejection(listTensors(dir))).message).toBe(`${dir}: only safetensors weights are supported (found pytorch_model.bin, no model.safetensors)`);
    rmSync(join(dir, "pytorch_model.bin"));
    writeFileSync(join(dir, "consolidated.safetensors"), "");
    expect((await rejection(listTensors(dir))).message).toMatch(/has consolidated\.safetensors but no model\.safetensors or model\.safetensors\.index\.json/);
    expect((await rejection(listTensors(join(tmp, "nowhere")))).message).toMatch(/model directory not found/);
  });
});

describe("validateLlamaTensors", () => {
  it("accepts the tiny model and ignores extra tensors", async () => {
    const tensors = await listTensors(single);
    const withExtra = new Map(tensors);
    withExtra.set("model.layers.0.self_attn.rotary_emb.inv_freq", { ...tensors.get("model.norm.weight")!, name: "inv_freq", shape: [8] });
    expect(() => validateLlamaTensors(tinyLlamaConfig(), withExtra, single)).not.toThrow();
    // Tied embeddings need no lm_head (and a present one is ignored).
    expect(() => validateLlamaTensors(tinyLlamaConfig({ tieWordEmbeddings: true }), tensors, single)).not.toThrow();
    expect(llamaTensorShapes(tinyLlamaConfig()).size).toBe(2 + 2 * 9 + 1);
  });

  it("names the tensor, the expected and the actual shape", async () => {
    const tensors = await listTensors(single);
    const e = (() => {
      try {
        validateLlamaTensors(tinyLlamaConfig({ intermediateSize: 192 }), tensors, single);
      } catch (err) {
        return err as ModelDirError;
      }
      throw new Error("no error");
    })();
    expect(e).toBeInstanceOf(ModelDirError);
    expect(e.message).toBe(`${join(single, "model.safetensors")}: tensor model.layers.0.mlp.gate_proj.weight has shape [176, 64], expected [192, 64] from config.json`);
    expect(e.field).toBe("model.layers.0.mlp.gate_proj.weight");

    const missing = new Map(tensors);
    missing.delete("model.layers.1.self_attn.v_proj.weight");
    expect(() => validateLlamaTensors(tinyLlamaConfig(), missing, single)).toThrow(`${single}: missing tensor model.layers.1.self_attn.v_proj.weight (expected shape [32, 64])`);
    expect(() => validateLlamaTensors(tinyLlamaConfig({ numHiddenLayers: 3 }), tensors, single)).toThrow(/missing tensor model\.layers\.2\.input_layernorm\.weight/);
  });
});
