/**
 * Streaming detokenization.
 *
 * Llama 3 uses byte-level BPE: every token is a sequence of bytes (spelled with GPT-2's
 * byte-to-unicode alphabet in tokenizer.json). We turn the vocabulary into a byte table once and
 * feed each generated token's bytes to a streaming TextDecoder, which emits text only for complete
 * UTF-8 characters — so an emoji split over three tokens is never sent as U+FFFD pieces, and each
 * token costs one table lookup and one decode call instead of re-decoding the whole output.
 */

/** GPT-2's bytes_to_unicode, inverted: the character tokenizer.json uses → the byte it stands for. */
function byteLevelAlphabet(): Map<string, number> {
  const bytes: number[] = [];
  for (let b = 33; b <= 126; b++) bytes.push(b);
  for (let b = 161; b <= 172; b++) bytes.push(b);
  for (let b = 174; b <= 255; b++) bytes.push(b);
  const chars = bytes.slice();
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bytes.includes(b)) {
      bytes.push(b);
      chars.push(256 + n++);
    }
  }
  const map = new Map<string, number>();
  bytes.forEach((b, i) => map.set(String.fromCodePoint(chars[i]!), b));
  return map;
}

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number> };
  decoder?: { type?: string; decoders?: Array<{ type?: string }> } | null;
  added_tokens?: Array<{ id: number; content: string; special?: boolean }>;
}

const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();

/** Bytes of every token id; special tokens map to no bytes (they are never shown as text). */
export class TokenByteTable {
  private constructor(
    private readonly bytes: Uint8Array[],
    readonly specialIds: ReadonlySet<number>,
  ) {}

  /** Returns null when the tokenizer is not byte-level BPE (then use the generic decoder). */
  static fromTokenizerJson(json: TokenizerJson): TokenByteTable | null {
    const decoderType = json.decoder?.type;
    const isByteLevel =
      decoderType === "ByteLevel" ||
      (decoderType === "Sequence" && (json.decoder?.decoders ?? []).some((d) => d.type === "ByteLevel"));
    const vocab = json.model?.vocab;
    if (json.model?.type !== "BPE" || !isByteLevel || !vocab) return null;
    const alphabet = byteLevelAlphabet();
    const table: Uint8Array[] = [];
    for (const [token, id] of Object.entries(vocab)) {
      const out = new Uint8Array(token.length * 2);
      let len = 0;
      for (const ch of token) {
        const b = alphabet.get(ch);
        if (b === undefined) return null; // not the byte-level alphabet after all
        out[len++] = b;
      }
      table[id] = out.slice(0, len);
    }
    const special = new Set<number>();
    for (const t of json.added_tokens ?? []) {
      if (t.special) {
        special.add(t.id);
        table[t.id] = EMPTY;
      } else {
        table[t.id] = utf8.encode(t.content);
      }
    }
    for (let i = 0; i < table.length; i++) if (!table[i]) table[i] = EMPTY;
    return new TokenByteTable(table, special);
  }

  get size(): number {
    return this.bytes.length;
  }

  tokenBytes(id: number): Uint8Array {
    return this.bytes[id] ?? EMPTY;
  }
}

/** The part of a tokenizer the generic fallback needs. */
export interface DecodeFn {
  (ids: number[]): string;
}

export interface IncrementalDetokenizer {
  /** Appends one token; returns the text that became complete (often "", never a partial character). */
  push(tokenId: number): string;
  /** Call at the end: returns any held-back text (an incomplete character becomes U+FFFD, as HF decodes it). */
  flush(): string;
}

export class ByteLevelDetokenizer implements IncrementalDetokenizer {
  private readonly decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  constructor(private readonly table: TokenByteTable) {}

  push(tokenId: number): string {
    const bytes = this.table.tokenBytes(tokenId);
    if (bytes.length === 0) return "";
    return this.decoder.decode(bytes, { stream: true });
  }

  flush(): string {
    return this.decoder.decode();
  }
}

/**
 * For tokenizers that are not byte-level BPE: decode the whole output and emit what is new,
 * holding back while the text ends in U+FFFD (an incomplete character). Quadratic in the output
 * length, so only a fallback.
 */
export class GenericDetokenizer implements IncrementalDetokenizer {
  private readonly ids: number[] = [];
  private emitted = 0;
  constructor(private readonly decode: DecodeFn) {}

  push(tokenId: number): string {
    this.ids.push(tokenId);
    const text = this.decode(this.ids);
    if (text.endsWith("\uFFFD") || text.length <= this.emitted) return "";
    const delta = text.slice(this.emitted);
    this.emitted = text.length;
    return delta;
  }

  flush(): string {
    const text = this.decode(this.ids);
    const delta = text.slice(this.emitted);
    this.emitted = text.length;
    return delta;
  }
}
