/**
 * Server-sent events, bytes in, events out.
 *
 * Each network piece is scanned once for the blank line that ends an event (`indexOf` on the bytes,
 * which the engine runs natively), and only complete events are decoded to text: a piece that holds
 * whole events is never copied, and a partial event waits in a buffer that grows by doubling.
 * Line endings may be LF, CRLF or CR (the SSE spec allows all three); a stream that ever sends a CR is
 * normalised to LF as it arrives, which costs a pass over its bytes, so LF-only streams (nearly all)
 * pay nothing for it.
 */

const LF = 10;
const CR = 13;

/** Called once per event; `event` is undefined for unnamed (`message`) events. */
export type SSEHandler = (event: string | undefined, data: string) => void;

export class SSEDecoder {
  private buf: Uint8Array = new Uint8Array(0);
  /** Pending bytes are `buf[0, len)`. */
  private len = 0;
  /** `buf[0, scanned)` holds no event boundary. */
  private scanned = 0;
  private crMode = false;
  /** The last piece ended in a CR, already turned into an LF: a leading LF in the next one belongs to it. */
  private pendingCR = false;
  private readonly text = new TextDecoder();

  constructor(private readonly onEvent: SSEHandler) {}

  push(piece: Uint8Array): void {
    if (!this.crMode && piece.indexOf(CR) !== -1) this.crMode = true;
    if (this.crMode) piece = this.normalize(piece);
    if (piece.length === 0) return;

    let bytes: Uint8Array;
    let end: number;
    let from: number;
    if (this.len === 0) {
      bytes = piece;
      end = piece.length;
      from = 0;
    } else {
      this.append(piece);
      bytes = this.buf;
      end = this.len;
      // The byte before `scanned` may be the first LF of a boundary split across pieces.
      from = this.scanned > 0 ? this.scanned - 1 : 0;
    }

    let start = 0;
    let i = bytes.indexOf(LF, from);
    while (i !== -1 && i < end) {
      if (i + 1 >= end) break;
      if (bytes[i + 1] === LF) {
        this.dispatch(bytes, start, i);
        start = i + 2;
        i = bytes.indexOf(LF, start);
      } else {
        i = bytes.indexOf(LF, i + 1);
      }
    }

    if (start === end) {
      this.len = 0;
      this.scanned = 0;
    } else if (bytes === piece) {
      this.len = 0;
      this.append(piece.subarray(start));
      this.scanned = this.len;
    } else {
      if (start > 0) this.buf.copyWithin(0, start, end);
      this.len = end - start;
      this.scanned = this.len;
    }
  }

  /**
   * The body ended. An event not closed by a blank line is still delivered: some servers end
   * with `data: [DONE]\n`, and dropping that would look like a truncated stream.
   */
  end(): void {
    if (this.len > 0) {
      let e = this.len;
      while (e > 0 && this.buf[e - 1] === LF) e--;
      if (e > 0) this.dispatch(this.buf, 0, e);
    }
    this.len = 0;
    this.scanned = 0;
  }

  private append(piece: Uint8Array): void {
    const need = this.len + piece.length;
    if (need > this.buf.length) {
      const grown = new Uint8Array(Math.max(need, this.buf.length * 2, 1024));
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
    this.buf.set(piece, this.len);
    this.len = need;
  }

  private normalize(piece: Uint8Array): Uint8Array {
    const out = new Uint8Array(piece.length);
    let n = 0;
    let k = 0;
    if (this.pendingCR && piece[0] === LF) k = 1;
    this.pendingCR = false;
    for (; k < piece.length; k++) {
      const b = piece[k]!;
      if (b === CR) {
        out[n++] = LF;
        if (k + 1 < piece.length) {
          if (piece[k + 1] === LF) k++;
        } else {
          this.pendingCR = true;
        }
      } else {
        out[n++] = b;
      }
    }
    return out.subarray(0, n);
  }

  /** One event: `bytes[start, end)` holds its lines, without the blank line that ended it. */
  private dispatch(bytes: Uint8Array, start: number, end: number): void {
    const block = this.text.decode(bytes.subarray(start, end));
    // Fast path: one `data:` line, which is what every LLM server sends.
    if (block.indexOf("\n") === -1) {
      if (block.startsWith("data:")) {
        this.onEvent(undefined, block.charCodeAt(5) === 32 ? block.slice(6) : block.slice(5));
      } else if (block.charCodeAt(0) !== 58 /* ':' comment */) {
        this.general(block);
      }
      return;
    }
    this.general(block);
  }

  private general(block: string): void {
    let event: string | undefined;
    let data: string | undefined;
    for (const line of block.split("\n")) {
      if (line === "" || line.charCodeAt(0) === 58) continue;
      const colon = line.indexOf(":");
      const field = colon === -1 ? line : line.slice(0, colon);
      let value = colon === -1 ? "" : line.slice(colon + 1);
      if (value.charCodeAt(0) === 32) value = value.slice(1);
      if (field === "data") data = data === undefined ? value : `${data}\n${value}`;
      else if (field === "event") event = value;
      // `id` and `retry` steer EventSource reconnection; a completion stream cannot be resumed.
    }
    // The spec drops events without data; a named event (`event: error`) is kept, so an error is never lost.
    if (data !== undefined || event !== undefined) this.onEvent(event === "message" ? undefined : event, data ?? "");
  }
}

const encoder = new TextEncoder();

/** One SSE event as bytes: `data: …\n\n`, with `event:` when named. Multi-line data is split per the spec. */
export function encodeSSE(data: string, event?: string): Uint8Array {
  const body = data.indexOf("\n") === -1 ? `data: ${data}\n\n` : `${data.split("\n").map((l) => `data: ${l}`).join("\n")}\n\n`;
  return encoder.encode(event ? `event: ${event}\n${body}` : body);
}
