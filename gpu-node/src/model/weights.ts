import { access, open, readdir } from "node:fs/promises";
import type { FileHandle } from "node:fs/promises";
import { basename, join } from "node:path";
import { isObject, readJsonFile } from "./config.js";
import { ModelDirError, describeValue } from "./errors.js";
import { fp8e4m3ToF32 } from "./quantization.js";
import { DTYPE_BYTES, bf16ToF32, f16ToF32, readSafetensorsHeader } from "./safetensors.js";
import type { LlamaConfig, ProgressCallback, TensorInfo } from "./types.js";

export const SINGLE_WEIGHTS_FILE = "model.safetensors";
export const WEIGHTS_INDEX_FILE = "model.safetensors.index.json";

/**
 * Lists every tensor of a model directory from the safetensors headers alone (no tensor data is
 * read): `model.safetensors`, or the shards named by `model.safetensors.index.json`. The index and
 * the shards must agree exactly: every tensor in `weight_map` is in the shard it names, and every
 * tensor of every shard is in `weight_map`.
 */
export async function listTensors(dir: string): Promise<Map<string, TensorInfo>> {
  const indexPath = join(dir, WEIGHTS_INDEX_FILE);
  if (await exists(indexPath)) return listShardedTensors(dir, indexPath);
  const single = join(dir, SINGLE_WEIGHTS_FILE);
  if (await exists(single)) {
    const header = await readSafetensorsHeader(single);
    return new Map(header.tensors.map((t) => [t.name, t]));
  }
  throw await noWeightsError(dir);
}

async function listShardedTensors(dir: string, indexPath: string): Promise<Map<string, TensorInfo>> {
  const index = await readJsonFile(indexPath);
  const weightMap = isObject(index) ? index.weight_map : undefined;
  if (!isObject(weightMap)) throw new ModelDirError(indexPath, `weight_map ${describeValue(weightMap)} must be an object {tensor: shard file}`, { field: "weight_map" });
  const shardNames = new Set<string>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (typeof shard !== "string" || shard === "" || basename(shard) !== shard || shard === "." || shard === "..") {
      throw new ModelDirError(indexPath, `weight_map.${name} ${describeValue(shard)} must be a file name in the model directory`, { field: `weight_map.${name}` });
    }
    shardNames.add(shard);
  }
  if (shardNames.size === 0) throw new ModelDirError(indexPath, "weight_map is empty", { field: "weight_map" });
  for (const shard of shardNames) {
    const path = join(dir, shard);
    if (!(await exists(path))) throw new ModelDirError(path, `shard listed in ${WEIGHTS_INDEX_FILE} not found`);
  }
  const headers = await Promise.all([...shardNames].map((s) => readSafetensorsHeader(join(dir, s))));
  const byName = new Map<string, TensorInfo>();
  for (const header of headers) {
    const shard = basename(header.file);
    for (const t of header.tensors) {
      const mapped = weightMap[t.name];
      if (mapped === undefined) {
        throw new ModelDirError(indexPath, `tensor ${t.name} is in shard ${shard} but missing from weight_map`, { field: `weight_map.${t.name}` });
      }
      if (mapped !== shard) {
        throw new ModelDirError(indexPath, `weight_map.${t.name} names shard ${describeValue(mapped)} but the tensor is in ${shard}`, { field: `weight_map.${t.name}` });
      }
      byName.set(t.name, t);
    }
  }
  const tensors = new Map<string, TensorInfo>();
  for (const [name, shard] of Object.entries(weightMap)) {
    const t = byName.get(name);
    if (t === undefined) {
      throw new ModelDirError(indexPath, `weight_map.${name} names shard ${shard} but that shard has no tensor ${name}`, { field: `weight_map.${name}` });
    }
    tensors.set(name, t);
  }
  return tensors;
}

async function noWeightsError(dir: string): Promise<ModelDirError> {
  let files: string[];
  try {
    files = await readdir(dir);
  } catch (e) {
    return new ModelDirError(dir, "model directory not found or not readable", { cause: e });
  }
  const st = files.filter((f) => f.endsWith(".safetensors"));
  if (st.length > 0) {
    return new ModelDirError(dir, `has ${st.slice(0, 3).join(", ")}${st.length > 3 ? ", ..." : ""} but no ${SINGLE_WEIGHTS_FILE} or ${WEIGHTS_INDEX_FILE}`);
  }
  const other = files.find((f) => /\.(bin|pt|pth|gguf)$/.test(f));
  if (other !== undefined) return new ModelDirError(dir, `only safetensors weights are supported (found ${other}, no ${SINGLE_WEIGHTS_FILE})`);
  return new ModelDirError(dir, `no weights: expected ${SINGLE_WEIGHTS_FILE} or ${WEIGHTS_INDEX_FILE}`);
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Bytes per read. Big enough that a 5 GB shard takes a few hundred reads, small enough to double-buffer. */
const CHUNK_BYTES = 16 << 20;

/**
 * Reads tensors (all of `infos`, or just `names`) and converts them to float32. Each file is read
 * sequentially in 16 MiB chunks with the next read in flight while the previous chunk converts;
 * `onProgress` is called after every chunk with bytes of tensor data read so far.
 */
export async function loadTensorsF32(
  infos: ReadonlyMap<string, TensorInfo>,
  names?: Iterable<string>,
  onProgress?: ProgressCallback,
  options: { chunkBytes?: number } = {},
): Promise<Map<string, Float32Array>> {
  // A multiple of 4 so no element straddles two chunks.
  const chunkBytes = Math.max(4, Math.floor((options.chunkBytes ?? CHUNK_BYTES) / 4) * 4);
  const selected: TensorInfo[] = [];
  for (const name of names ?? infos.keys()) {
    const t = infos.get(name);
    if (t === undefined) throw new Error(`loadTensorsF32: no tensor named ${name}`);
    if (t.dtype === "I32") throw new Error(`loadTensorsF32: ${name} is I32 (packed bits, not numbers); read it with readTensorBytes`);
    selected.push(t);
  }
  const bytesTotal = selected.reduce((a, t) => a + t.byteLength, 0);
  const byFile = new Map<string, TensorInfo[]>();
  for (const t of selected) {
    const list = byFile.get(t.file);
    if (list === undefined) byFile.set(t.file, [t]);
    else list.push(t);
  }
  const out = new Map<string, Float32Array>();
  const progress = { bytesDone: 0, bytesTotal, onProgress };
  const scratchBytes = Math.min(chunkBytes, selected.reduce((a, t) => Math.max(a, t.byteLength), 0));
  const scratch = [new Uint8Array(scratchBytes), new Uint8Array(scratchBytes)];
  for (const [file, tensors] of byFile) {
    tensors.sort((a, b) => a.offset - b.offset);
    for (const t of tensors) out.set(t.name, allocF32(t));
    const fh = await openForRead(file);
    try {
      await readFileTensors(fh, file, tensors, out, scratch, chunkBytes, progress);
    } finally {
      await fh.close();
    }
  }
  // Keep the caller's order (names, or the map's) rather than file order.
  return new Map(selected.map((t) => [t.name, out.get(t.name)!]));
}

/** The raw little-endian bytes of tensors (packed AWQ ints, FP8 bytes), by name, in the order asked. */
export async function readTensorBytes(infos: ReadonlyMap<string, TensorInfo>, names: Iterable<string>): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  const handles = new Map<string, FileHandle>();
  try {
    for (const name of names) {
      const t = infos.get(name);
      if (t === undefined) throw new Error(`readTensorBytes: no tensor named ${name}`);
      let fh = handles.get(t.file);
      if (fh === undefined) {
        fh = await openForRead(t.file);
        handles.set(t.file, fh);
      }
      const buf = new Uint8Array(t.byteLength);
      await readAt(fh, t.file, buf, t.offset);
      out.set(name, buf);
    }
  } finally {
    for (const fh of handles.values()) await fh.close();
  }
  return out;
}

interface ChunkJob {
  t: TensorInfo;
  /** Byte offset within the tensor. */
  pos: number;
  n: number;
  /** Where the bytes land: the output itself (F32) or a scratch buffer (converted afterwards). */
  dst: Uint8Array;
}

async function readFileTensors(
  fh: FileHandle,
  file: string,
  tensors: TensorInfo[],
  out: Map<string, Float32Array>,
  scratch: Uint8Array[],
  chunkBytes: number,
  progress: { bytesDone: number; bytesTotal: number; onProgress: ProgressCallback | undefined },
): Promise<void> {
  const jobs: Omit<ChunkJob, "dst">[] = [];
  for (const t of tensors) {
    for (let pos = 0; pos < t.byteLength; pos += chunkBytes) jobs.push({ t, pos, n: Math.min(chunkBytes, t.byteLength - pos) });
  }
  const start = (k: number): Promise<ChunkJob> => {
    const j = jobs[k]!;
    const o = out.get(j.t.name)!;
    const dst = j.t.dtype === "F32" ? new Uint8Array(o.buffer, o.byteOffset + j.pos, j.n) : scratch[k % 2]!.subarray(0, j.n);
    return readAt(fh, file, dst, j.t.offset + j.pos).then(() => ({ ...j, dst }));
  };
  let pending = jobs.length > 0 ? start(0) : undefined;
  for (let k = 0; k < jobs.length; k++) {
    const job = await pending!;
    pending = k + 1 < jobs.length ? start(k + 1) : undefined;
    try {
      const o = out.get(job.t.name)!;
      if (job.t.dtype === "BF16") bf16ToF32(job.dst, o, job.pos / 2);
      else if (job.t.dtype === "F16") f16ToF32(job.dst, o, job.pos / 2);
      else if (job.t.dtype === "F8_E4M3") for (let i = 0; i < job.n; i++) o[job.pos + i] = fp8e4m3ToF32(job.dst[i]!);
      progress.bytesDone += job.n;
      progress.onProgress?.({ bytesDone: progress.bytesDone, bytesTotal: progress.bytesTotal, file });
    } catch (e) {
      pending?.catch(() => {});
      throw e;
    }
  }
}

function allocF32(t: TensorInfo): Float32Array {
  const numel = t.byteLength / DTYPE_BYTES[t.dtype];
  try {
    return new Float32Array(numel);
  } catch (e) {
    throw new ModelDirError(t.file, `tensor ${t.name} (${numel} elements) is too large to load as float32`, { field: t.name, cause: e });
  }
}

async function openForRead(file: string): Promise<FileHandle> {
  try {
    return await open(file, "r");
  } catch (e) {
    throw new ModelDirError(file, `cannot open (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { cause: e });
  }
}

async function readAt(fh: FileHandle, file: string, dst: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < dst.length) {
    const { bytesRead } = await fh.read(dst, done, dst.length - done, position + done);
    if (bytesRead === 0) throw new ModelDirError(file, `truncated: unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

/** The HF tensor names and shapes ([out, in] for linear layers) a LlamaForCausalLM checkpoint must have. */
export function llamaTensorShapes(config: LlamaConfig): Map<string, number[]> {
  const { hiddenSize: h, intermediateSize: inter, numAttentionHeads: nh, numKeyValueHeads: nkv, headDim: hd, vocabSize: v } = config;
  const shapes = new Map<string, number[]>();
  shapes.set("model.embed_tokens.weight", [v, h]);
  for (let i = 0; i < config.numHiddenLayers; i++) {
    const p = `model.layers.${i}.`;
    shapes.set(`${p}input_layernorm.weight`, [h]);
    shapes.set(`${p}self_attn.q_proj.weight`, [nh * hd, h]);
    shapes.set(`${p}self_attn.k_proj.weight`, [nkv * hd, h]);
    shapes.set(`${p}self_attn.v_proj.weight`, [nkv * hd, h]);
    shapes.set(`${p}self_attn.o_proj.weight`, [h, nh * hd]);
    shapes.set(`${p}post_attention_layernorm.weight`, [h]);
    shapes.set(`${p}mlp.gate_proj.weight`, [inter, h]);
    shapes.set(`${p}mlp.up_proj.weight`, [inter, h]);
    shapes.set(`${p}mlp.down_proj.weight`, [h, inter]);
  }
  shapes.set("model.norm.weight", [h]);
  if (!config.tieWordEmbeddings) shapes.set("lm_head.weight", [v, h]);
  return shapes;
}

/** How one linear layer is stored in the checkpoint. */
export type LinearStorage = "float" | "awq" | "fp8";

/**
 * Which tensors hold linear module `module` (e.g. "model.layers.0.mlp.up_proj"): `module.weight` in
 * floats; AWQ `module.qweight`/`qzeros`/`scales`; or compressed-tensors `module.weight` (F8_E4M3)
 * with `module.weight_scale`. Decided by config.json's quantization_config and the tensors present
 * (modules a checkpoint leaves unquantized, such as lm_head, keep a float `weight`).
 */
export function linearStorage(config: LlamaConfig, tensors: ReadonlyMap<string, TensorInfo>, module: string): LinearStorage {
  const q = config.quantization;
  if (q?.method === "awq" && tensors.has(`${module}.qweight`)) return "awq";
  if (q?.method === "compressed-tensors" && tensors.get(`${module}.weight`)?.dtype === "F8_E4M3") return "fp8";
  return "float";
}

const FLOAT_DTYPES = new Set(["BF16", "F16", "F32"]);
const fmt = (s: readonly number[]) => `[${s.join(", ")}]`;

/**
 * Checks that every tensor the config implies is present with the HF shape (quantized linears in
 * their packed shapes). Extra tensors (rotary inv_freq buffers, a redundant lm_head when tied,
 * activation scales) are ignored. `where` names the directory in the error when a tensor is missing.
 */
export function validateLlamaTensors(config: LlamaConfig, tensors: ReadonlyMap<string, TensorInfo>, where = "model weights"): void {
  const get = (name: string, what: string): TensorInfo => {
    const t = tensors.get(name);
    if (t === undefined) throw new ModelDirError(where, `missing tensor ${name} (expected ${what})`, { field: name });
    return t;
  };
  const expectShape = (t: TensorInfo, shape: readonly number[], note = "from config.json") => {
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new ModelDirError(t.file, `tensor ${t.name} has shape ${fmt(t.shape)}, expected ${fmt(shape)} ${note}`, { field: t.name });
    }
  };
  const expectDtype = (t: TensorInfo, allowed: Set<string>, why: string) => {
    if (!allowed.has(t.dtype)) throw new ModelDirError(t.file, `tensor ${t.name} is ${t.dtype}; ${why}`, { field: t.name });
  };
  const q = config.quantization;
  for (const [name, shape] of llamaTensorShapes(config)) {
    const module = name.slice(0, -".weight".length);
    const isLinear = shape.length === 2 && name !== "model.embed_tokens.weight";
    const storage = isLinear ? linearStorage(config, tensors, module) : "float";
    const [outF, inF] = shape as [number, number];
    if (storage === "awq") {
      const g = (q as { groupSize: number }).groupSize;
      const why = `for AWQ group size ${g}`;
      if (inF % g !== 0 || outF % 8 !== 0) {
        throw new ModelDirError(where, `${module} is [${outF}, ${inF}]: AWQ needs in_features divisible by group_size ${g} and out_features by 8`, { field: `${module}.qweight` });
      }
      const qweight = get(`${module}.qweight`, `I32 ${fmt([inF, outF / 8])}`);
      const qzeros = get(`${module}.qzeros`, `I32 ${fmt([inF / g, outF / 8])}`);
      const scales = get(`${module}.scales`, `F16 ${fmt([inF / g, outF])}`);
      expectDtype(qweight, new Set(["I32"]), "AWQ qweight must be I32");
      expectDtype(qzeros, new Set(["I32"]), "AWQ qzeros must be I32");
      expectDtype(scales, FLOAT_DTYPES, "AWQ scales must be F16, BF16 or F32");
      expectShape(qweight, [inF, outF / 8], why);
      expectShape(qzeros, [inF / g, outF / 8], why);
      expectShape(scales, [inF / g, outF], why);
    } else if (storage === "fp8") {
      const weight = get(name, `F8_E4M3 ${fmt(shape)}`);
      expectShape(weight, shape);
      const scale = get(`${module}.weight_scale`, "the FP8 scale of " + module);
      expectDtype(scale, FLOAT_DTYPES, "FP8 weight_scale must be BF16, F16 or F32");
      const numel = scale.shape.reduce((a, d) => a * d, 1);
      const strategy = (q as { strategy: string }).strategy;
      if (strategy === "channel" ? numel !== outF || scale.shape[0] !== outF : numel !== 1) {
        throw new ModelDirError(scale.file, `tensor ${scale.name} has shape ${fmt(scale.shape)}, expected ${strategy === "channel" ? fmt([outF, 1]) : "[1]"} for ${strategy} FP8 scales`, { field: scale.name });
      }
    } else {
      const t = get(name, `shape ${fmt(shape)}`);
      expectShape(t, shape);
      const why =
        t.dtype === "I32" || t.dtype === "F8_E4M3"
          ? `a packed dtype, but config.json's quantization_config does not describe it (${q === null ? "none" : q.method})`
          : "";
      expectDtype(t, FLOAT_DTYPES, why);
    }
  }
}

/** Total bytes of tensor data (for a progress bar's total). */
export function totalTensorBytes(tensors: Iterable<TensorInfo>): number {
  let n = 0;
  for (const t of tensors) n += t.byteLength;
  return n;
}
