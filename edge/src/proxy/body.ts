import { ApiError } from "../errors";

function tooLarge(max: number): ApiError {
  return new ApiError(413, `The request body is larger than ${max} bytes.`, { code: "request_too_large" });
}

/** Reads a request body, refusing (413) as soon as it exceeds `max` bytes, declared or not. */
export async function readBody(req: Request, max: number): Promise<Uint8Array> {
  const declared = req.headers.get("content-length");
  // What will be refused is not read.
  if (declared !== null && Number(declared) > max) throw tooLarge(max);
  if (!req.body) return new Uint8Array(0);
  if (declared !== null) {
    const buf = new Uint8Array(await req.arrayBuffer());
    if (buf.byteLength > max) throw tooLarge(max);
    return buf;
  }
  const reader = req.body.getReader();
  const body = await readUpTo(reader, max);
  if (body !== null) return body;
  // Reading to the end keeps the client's connection usable; a body far past the limit is cut.
  let size = max;
  while (size <= max * 4) {
    const more = await reader.read();
    if (more.done) throw tooLarge(max);
    size += more.value.byteLength;
  }
  await reader.cancel().catch(() => undefined);
  throw tooLarge(max);
}

/**
 * Reads a stream to its end into one buffer of at most `max` bytes; null as soon as it is longer
 * (the reader is then left where it stopped, for the caller to drain or cancel).
 */
export async function readUpTo(reader: ReadableStreamDefaultReader<Uint8Array>, max: number): Promise<Uint8Array | null> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) return null;
    parts.push(value);
  }
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

const decoder = new TextDecoder();

/** JSON.parse of the body, or a 400 in the OpenAI shape. */
export function parseJson(body: Uint8Array): unknown {
  try {
    return JSON.parse(decoder.decode(body));
  } catch {
    throw new ApiError(400, "We could not parse the JSON body of your request.", { code: "invalid_json" });
  }
}
