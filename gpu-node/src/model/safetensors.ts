/**
 * The safetensors format: an 8-byte little-endian u64 header length N, N bytes of JSON
 * `{ name: { dtype, shape, data_offsets: [begin, end] }, "__metadata__"?: {..} }`, then the data
 * buffer. Offsets are relative to the start of the data buffer (byte 8 + N).
 *
 *   | u64 N | header JSON (N bytes, space padded) | data: tensor bytes at data_offsets ... |
 *
 * Accepted dtypes: BF16/F16/F32 (what the engines compute in) and the packed dtypes of the quantized
 * checkpoints we load (F8_E4M3 weights of compressed-tensors, I32 packs of AutoAWQ); anything else
 * is refused up front with a message that says so.
 */
import { open, rename, rm } from "node:fs/promises";
import { endianness } from "node:os";
import { ModelDirError, describeValue } from "./errors.js";
import type { TensorDType, TensorInfo } from "./types.js";

export const DTYPE_BYTES: Readonly<Record<TensorDType, number>> = { BF16: 2, F16: 2, F32: 4, F8_E4M3: 1, I32: 4 };
const SUPPORTED_DTYPES = Object.keys(DTYPE_BYTES);

/** The reference implementation refuses headers over 100 MB; so do we. */
const MAX_HEADER_BYTES = 100_000_000;

/** Other dtypes that appear in real checkpoints, so the error can say "unsupported" rather than "unknown". */
const KNOWN_DTYPES = new Set(["BOOL", "U8", "I8", "I16", "U16", "U32", "I64", "U64", "F64", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64"]);

if (endianness() !== "LE") throw new Error("safetensors.ts assumes a little-endian host");

export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  /** Absolute offset of the data buffer (8 + header length). */
  dataStart: number;
  /** In header order. Offsets in each TensorInfo are absolute. */
  tensors: TensorInfo[];
  metadata: Record<string, string>;
}

/** Reads and validates the header of one `.safetensors` file. Any defect → `ModelDirError` naming `file`. */
export async function readSafetensorsHeader(file: string): Promise<SafetensorsHeader> {
  let fh;
  try {
    fh = await open(file, "r");
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new ModelDirError(file, code === "ENOENT" ? "file not found" : `cannot open (${code ?? String(e)})`, { cause: e });
  }
  try {
    const fileSize = (await fh.stat()).size;
    if (fileSize < 8) throw new ModelDirError(file, `truncated: ${fileSize} bytes, no room for the 8-byte header length`);
    const lenBuf = Buffer.alloc(8);
    await readExactly(fh, lenBuf, 0, file);
    const headerLen = lenBuf.readBigUInt64LE(0);
    if (headerLen > BigInt(Math.min(MAX_HEADER_BYTES, fileSize - 8))) {
      throw new ModelDirError(file, `bad header length ${headerLen} for a file of ${fileSize} bytes (not a safetensors file, or truncated)`);
    }
    const n = Number(headerLen);
    const headerBuf = Buffer.alloc(n);
    await readExactly(fh, headerBuf, 8, file);
    return parseSafetensorsHeader(headerBuf, file, fileSize);
  } finally {
    await fh.close();
  }
}

/** Validates a header already in memory (`headerBytes` = the N JSON bytes). */
export function parseSafetensorsHeader(headerBytes: Uint8Array, file: string, fileSize: number): SafetensorsHeader {
  const dataStart = 8 + headerBytes.length;
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(headerBytes.buffer, headerBytes.byteOffset, headerBytes.length).toString("utf8"));
  } catch (e) {
    throw new ModelDirError(file, `header is not valid JSON (${(e as Error).message}); the file is corrupt`, { cause: e });
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ModelDirError(file, `header is not a JSON object`);
  }
  const tensors: TensorInfo[] = [];
  const metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(json as Record<string, unknown>)) {
    if (name === "__metadata__") {
      if (typeof entry === "object" && entry !== null) {
        for (const [k, v] of Object.entries(entry)) if (typeof v === "string") metadata[k] = v;
      }
      continue;
    }
    tensors.push(parseTensorEntry(name, entry, file, dataStart, fileSize));
  }
  // No two tensors may share bytes: walk them by offset, remembering the furthest end seen.
  const byOffset = tensors.filter((t) => t.byteLength > 0).sort((a, b) => a.offset - b.offset);
  let last: TensorInfo | undefined;
  for (const cur of byOffset) {
    if (last !== undefined && cur.offset < last.offset + last.byteLength) {
      const span = (t: TensorInfo) => `[${t.offset - dataStart}, ${t.offset - dataStart + t.byteLength}]`;
      throw new ModelDirError(file, `tensors ${last.name} and ${cur.name} overlap (data_offsets ${span(last)} and ${span(cur)})`, { field: cur.name });
    }
    if (last === undefined || cur.offset + cur.byteLength > last.offset + last.byteLength) last = cur;
  }
  return { file, fileSize, dataStart, tensors, metadata };
}

function parseTensorEntry(name: string, entry: unknown, file: string, dataStart: number, fileSize: number): TensorInfo {
  const bad = (detail: string) => new ModelDirError(file, `tensor ${name}: ${detail}`, { field: name });
  if (typeof entry !== "object" || entry === null) throw bad(`header entry ${describeValue(entry)} is not an object`);
  const { dtype, shape, data_offsets: offsets } = entry as Record<string, unknown>;
  if (typeof dtype !== "string" || !SUPPORTED_DTYPES.includes(dtype)) {
    const kind = typeof dtype === "string" && KNOWN_DTYPES.has(dtype) ? "unsupported" : "unknown";
    throw bad(`${kind} dtype ${describeValue(dtype)} (supported: ${SUPPORTED_DTYPES.join(", ")})`);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw bad(`bad shape ${describeValue(shape)}`);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
    throw bad(`bad data_offsets ${describeValue(offsets)}`);
  }
  const [begin, end] = offsets as [number, number];
  const numel = (shape as number[]).reduce((a, d) => a * d, 1);
  const expected = numel * DTYPE_BYTES[dtype as TensorDType];
  if (expected !== end - begin) {
    throw bad(`shape ${describeValue(shape)} ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`);
  }
  if (dataStart + end > fileSize) {
    throw bad(`data_offsets [${begin}, ${end}] run past the end of the file (${fileSize - dataStart} data bytes; the file is truncated)`);
  }
  return { name, dtype: dtype as TensorDType, shape: shape as number[], file, offset: dataStart + begin, byteLength: end - begin };
}

async function readExactly(fh: import("node:fs/promises").FileHandle, buf: Uint8Array, position: number, file: string): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw new ModelDirError(file, `truncated: unexpected end of file at byte ${position + done}`);
    done += bytesRead;
  }
}

export interface TensorToWrite {
  name: string;
  dtype: TensorDType;
  shape: number[];
  /** Raw little-endian bytes of `dtype`, or float32 values (converted to `dtype` on write; BF16/F16 round to nearest even). */
  data: Uint8Array | Float32Array;
}

/**
 * Writes a `.safetensors` file (tensors in the given order, header space-padded to 8 bytes so the
 * data buffer is aligned). Writes to `path.tmp-<pid>` and renames, so a crash leaves no half file.
 * `metadata` defaults to `{ format: "pt" }`, which transformers requires.
 */
export async function writeSafetensors(path: string, tensors: readonly TensorToWrite[], metadata: Record<string, string> = { format: "pt" }): Promise<void> {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (t.name === "__metadata__" || t.name in header) throw new Error(`writeSafetensors: duplicate or reserved tensor name ${t.name}`);
    const numel = t.shape.reduce((a, d) => a * d, 1);
    const bytes = tensorBytes(t, numel);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    blobs.push(bytes);
    offset += bytes.length;
  }
  let json = JSON.stringify(header);
  const jsonLen = Buffer.byteLength(json, "utf8");
  json += " ".repeat((8 - ((8 + jsonLen) % 8)) % 8);
  const headerBuf = Buffer.from(json, "utf8");
  const lenBuf = Buffer.alloc(8);
  lenBuf.writeBigUInt64LE(BigInt(headerBuf.length));

  const tmp = `${path}.tmp-${process.pid}`;
  const fh = await open(tmp, "w");
  try {
    await fh.write(lenBuf);
    await fh.write(headerBuf);
    for (const b of blobs) await fh.write(b);
    await fh.close();
    await rename(tmp, path);
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
}

function tensorBytes(t: TensorToWrite, numel: number): Uint8Array {
  if (t.data instanceof Float32Array) {
    if (t.data.length !== numel) throw new Error(`writeSafetensors: ${t.name} has ${t.data.length} values for shape [${t.shape.join(", ")}]`);
    if (t.dtype === "I32" || t.dtype === "F8_E4M3") throw new Error(`writeSafetensors: ${t.name} is ${t.dtype}; pass its raw bytes`);
    const out = t.dtype === "F32" ? t.data : t.dtype === "BF16" ? f32ToBf16(t.data) : f32ToF16(t.data);
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  }
  if (t.data.length !== numel * DTYPE_BYTES[t.dtype]) {
    throw new Error(`writeSafetensors: ${t.name} has ${t.data.length} bytes; shape [${t.shape.join(", ")}] ${t.dtype} needs ${numel * DTYPE_BYTES[t.dtype]}`);
  }
  return t.data;
}

// ---- dtype conversion (bit ops, no tables) ----

/** A Uint16Array view of `src` when it is 2-byte aligned, else an aligned copy. */
function u16View(src: Uint8Array): Uint16Array {
  if (src.length % 2 !== 0) throw new RangeError(`16-bit data has an odd byte length ${src.length}`);
  if (src.byteOffset % 2 === 0) return new Uint16Array(src.buffer, src.byteOffset, src.length / 2);
  return new Uint16Array(src.slice().buffer);
}

/** bf16 is the top half of an f32: shifting its bits left by 16 is exact. `dst` may be given to avoid an allocation. */
export function bf16ToF32(src: Uint8Array, dst?: Float32Array, dstOffset = 0): Float32Array {
  const h = u16View(src);
  const out = dst ?? new Float32Array(h.length);
  const o = new Uint32Array(out.buffer, out.byteOffset + dstOffset * 4, h.length);
  for (let i = 0; i < h.length; i++) o[i] = h[i]! << 16;
  return out;
}

/** IEEE half → float. Normals and inf/NaN rebias the exponent; subnormals are mantissa × 2^-24 (exact). */
export function f16ToF32(src: Uint8Array, dst?: Float32Array, dstOffset = 0): Float32Array {
  const h = u16View(src);
  const out = dst ?? new Float32Array(h.length);
  const of = new Float32Array(out.buffer, out.byteOffset + dstOffset * 4, h.length);
  const ou = new Uint32Array(out.buffer, out.byteOffset + dstOffset * 4, h.length);
  for (let i = 0; i < h.length; i++) {
    const x = h[i]!;
    const em = x & 0x7fff;
    if (em >= 0x0400) {
      // exponent 31 (inf/NaN) maps to 255; others rebias by 127 - 15 = 112.
      ou[i] = ((x & 0x8000) << 16) | (em >= 0x7c00 ? 0x7f800000 | ((x & 0x3ff) << 13) : (em << 13) + 0x38000000);
    } else {
      const v = em * 5.960464477539063e-8; // 2^-24
      of[i] = x & 0x8000 ? -v : v;
    }
  }
  return out;
}

/** float → bf16 bits, round to nearest even; NaN stays a (quiet) NaN. */
export function f32ToBf16(src: Float32Array, dst?: Uint16Array): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = dst ?? new Uint16Array(src.length);
  for (let i = 0; i < u.length; i++) {
    const b = u[i]!;
    if ((b & 0x7fffffff) > 0x7f800000) out[i] = (b >>> 16) | 0x40;
    else out[i] = (b + 0x7fff + ((b >>> 16) & 1)) >>> 16; // < 2^32 for every non-NaN b
  }
  return out;
}

/** float → IEEE half bits, round to nearest even; overflow → ±inf, NaN → quiet NaN. */
export function f32ToF16(src: Float32Array, dst?: Uint16Array): Uint16Array {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  const out = dst ?? new Uint16Array(src.length);
  for (let i = 0; i < u.length; i++) {
    const b = u[i]!;
    const sign = (b >>> 16) & 0x8000;
    const a = b & 0x7fffffff;
    let h: number;
    if (a >= 0x7f800000) h = a > 0x7f800000 ? 0x7e00 : 0x7c00;
    else if (a >= 0x477ff000) h = 0x7c00; // >= 65520 rounds past the largest half (65504)
    else if (a < 0x38800000) {
      // Below 2^-14: subnormal half = round_half_even(|x| * 2^24); may round up into the smallest normal (0x400).
      const v = Math.abs(src[i]!) * 16777216;
      let r = Math.floor(v);
      const d = v - r;
      if (d > 0.5 || (d === 0.5 && (r & 1) === 1)) r++;
      h = r;
    } else {
      // Rebias (127 → 15) and drop 13 mantissa bits with round-half-even; a carry correctly bumps the exponent.
      h = (a - 0x38000000 + 0xfff + ((a >>> 13) & 1)) >>> 13;
    }
    out[i] = sign | h;
  }
  return out;
}
