import { access, readFile } from "node:fs/promises";
import { join } from "node:path";
import { Template } from "@huggingface/jinja";
import { Tokenizer } from "@huggingface/tokenizers";
import { isObject, readJsonFile } from "./config.js";
import { ChatTemplateError, ModelDirError } from "./errors.js";

/** One chat message as the template sees it (OpenAI/HF shape; extra keys pass through). */
export interface ChatMessage {
  role: string;
  content?: unknown;
  [key: string]: unknown;
}

export interface ApplyChatTemplateOptions {
  /** Append the assistant header so the model answers next (HF `add_generation_prompt`). */
  addGenerationPrompt?: boolean;
  /** JSON-schema tool definitions; passed to the template as `tools` only when given. */
  tools?: readonly unknown[];
  /** Extra template variables (e.g. `date_string`, `builtin_tools`), like HF's `**kwargs`. */
  extra?: Record<string, unknown>;
  /** A named template of a multi-template tokenizer_config, or a template source. */
  chatTemplate?: string;
}

export interface LlamaTokenizerSource {
  /** Parsed tokenizer.json. */
  tokenizerJson: unknown;
  /** Parsed tokenizer_config.json ({} when the file is absent). */
  tokenizerConfig: unknown;
  /** Template text of a separate `chat_template.jinja`, which overrides tokenizer_config's. */
  chatTemplate?: string;
  /** Directory or file named in errors. */
  source?: string;
}

/**
 * The tokenizer of a Hugging Face model directory (`tokenizer.json` + `tokenizer_config.json`),
 * with HF `apply_chat_template` semantics. `@huggingface/tokenizers` parses the files and is the
 * reference; for Llama-3-style byte-level BPE, encode and decode use exact fast paths (a cache of
 * pre-token → ids and a plain rank-merge loop; per-token bytes and one UTF-8 decode), which a
 * startup probe checks against the library.
 *
 * @example
 * const tok = await LlamaTokenizer.fromDir("/models/llama-3.1-8b-instruct");
 * const ids = tok.encodeChat([{ role: "user", content: "Hi" }], { addGenerationPrompt: true });
 */
export class LlamaTokenizer {
  readonly vocabSize: number;
  readonly bosToken: string | undefined;
  readonly bosTokenId: number | undefined;
  readonly eosToken: string | undefined;
  readonly eosTokenId: number | undefined;
  /** Ids of tokens marked special (skipped by `decode(..., { skipSpecialTokens: true })`). */
  readonly specialTokenIds: ReadonlySet<number>;

  private readonly tok: Tokenizer;
  private readonly source: string;
  private readonly specialTokensMap: Record<string, string>;
  private readonly chatTemplates: Map<string, string>;
  private readonly compiled = new Map<string, Template>();
  /** Per-id bytes for the byte-level decode path; null when the decoder is not plain ByteLevel. */
  private readonly tokenBytesCache: (Uint8Array | undefined)[] | null;
  private readonly addedTokenIds: ReadonlySet<number>;
  private readonly utf8 = new TextDecoder("utf-8", { fatal: false, ignoreBOM: true });
  /** Exact fast path for Llama-3-style byte-level BPE; null → the library's encode. */
  private readonly fast: ByteLevelBpeEncoder | null;
  private addedPattern: RegExp | undefined;

  constructor(src: LlamaTokenizerSource) {
    this.source = src.source ?? "tokenizer";
    const json = src.tokenizerJson;
    const config = src.tokenizerConfig;
    if (!isObject(json)) throw new ModelDirError(join(this.source, "tokenizer.json"), "expected a JSON object");
    if (!isObject(config)) throw new ModelDirError(join(this.source, "tokenizer_config.json"), "expected a JSON object");
    try {
      // clean_up_tokenization_spaces would rewrite " ," to "," etc.: lossy round trips (Llama 3 sets it false).
      this.tok = new Tokenizer(json, { ...config, clean_up_tokenization_spaces: false });
    } catch (e) {
      throw new ModelDirError(join(this.source, "tokenizer.json"), `cannot build the tokenizer (${(e as Error).message})`, { cause: e });
    }
    this.fast = ByteLevelBpeEncoder.tryCreate(json, this.tok);

    const model = this.tok.model!;
    this.vocabSize = model.vocab.length;
    const added = this.tok.get_added_tokens_decoder();
    this.addedTokenIds = new Set(added.keys());
    this.specialTokenIds = new Set([...added].filter(([, t]) => t.special).map(([id]) => id));
    const decoderType = isObject(json.decoder) ? json.decoder.type : undefined;
    this.tokenBytesCache = decoderType === "ByteLevel" ? new Array(this.vocabSize) : null;

    this.specialTokensMap = {};
    for (const key of ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]) {
      const v = tokenContent(config[key]);
      if (v !== undefined) this.specialTokensMap[key] = v;
    }
    this.bosToken = this.specialTokensMap.bos_token;
    this.eosToken = this.specialTokensMap.eos_token;
    this.bosTokenId = this.bosToken === undefined ? undefined : this.tokenToId(this.bosToken);
    this.eosTokenId = this.eosToken === undefined ? undefined : this.tokenToId(this.eosToken);

    this.chatTemplates = parseChatTemplates(src.chatTemplate ?? config.chat_template, join(this.source, "tokenizer_config.json"));
  }

  /** Loads `tokenizer.json`, `tokenizer_config.json` (optional) and `chat_template.jinja` (optional) from `dir`. */
  static async fromDir(dir: string): Promise<LlamaTokenizer> {
    const tokenizerJson = await readJsonFile(join(dir, "tokenizer.json"));
    const configPath = join(dir, "tokenizer_config.json");
    const tokenizerConfig = (await fileExists(configPath)) ? await readJsonFile(configPath) : {};
    let chatTemplate: string | undefined;
    try {
      chatTemplate = await readFile(join(dir, "chat_template.jinja"), "utf8");
    } catch {
      chatTemplate = undefined;
    }
    return new LlamaTokenizer({ tokenizerJson, tokenizerConfig, chatTemplate, source: dir });
  }

  /**
   * Text → ids. Special tokens written in the text (`<|eot_id|>`) become their ids.
   * `addSpecialTokens` (default true, as in HF) applies the post-processor, i.e. prepends bos for Llama 3.
   */
  encode(text: string, options: { addSpecialTokens?: boolean } = {}): number[] {
    const addSpecialTokens = options.addSpecialTokens ?? true;
    if (this.fast !== null) return this.fast.encode(text, addSpecialTokens);
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  /** Whether encode uses the built-in byte-level BPE path (true for Llama 3.x tokenizers). */
  get fastEncode(): boolean {
    return this.fast !== null;
  }

  /** Ids → text. Throws a RangeError on an id outside the vocabulary. */
  decode(ids: readonly number[], options: { skipSpecialTokens?: boolean } = {}): string {
    let list = ids;
    if (options.skipSpecialTokens) list = ids.filter((id) => !this.specialTokenIds.has(id));
    if (list.length === 0) return "";
    if (this.tokenBytesCache === null) {
      for (const id of list) this.checkId(id);
      return this.tok.decode(list as number[], { skip_special_tokens: false });
    }
    // Same result as the ByteLevel decoder: runs of ordinary tokens are UTF-8 decoded as one byte
    // string; added tokens are cut out as their text (so a partial character before one becomes U+FFFD).
    let out = "";
    let run: Uint8Array[] = [];
    let runLen = 0;
    const flush = () => {
      if (runLen === 0) return;
      const buf = new Uint8Array(runLen);
      let o = 0;
      for (const b of run) {
        buf.set(b, o);
        o += b.length;
      }
      out += this.utf8.decode(buf);
      run = [];
      runLen = 0;
    };
    for (const id of list) {
      if (this.addedTokenIds.has(id)) {
        flush();
        out += this.idToToken(id)!;
      } else {
        const b = this.tokenBytes(id);
        run.push(b);
        runLen += b.length;
      }
    }
    flush();
    return out;
  }

  /**
   * The raw bytes token `id` stands for (UTF-8 of its text for added tokens). Byte-level tokens may
   * hold part of a character; a streaming detokenizer can feed these to a `TextDecoder({stream: true})`.
   * Throws on tokenizers whose decoder is not byte-level.
   */
  tokenBytes(id: number): Uint8Array {
    this.checkId(id);
    if (this.tokenBytesCache === null) throw new Error("tokenBytes: this tokenizer's decoder is not byte-level");
    let b = this.tokenBytesCache[id];
    if (b === undefined) {
      const token = this.idToToken(id)!;
      if (this.addedTokenIds.has(id)) b = new TextEncoder().encode(token);
      else {
        b = new Uint8Array(token.length);
        for (let i = 0; i < token.length; i++) {
          const byte = UNICODE_TO_BYTE.get(token.charCodeAt(i));
          if (byte === undefined) throw new Error(`tokenBytes: token ${id} ${JSON.stringify(token)} is not byte-level`);
          b[i] = byte;
        }
      }
      this.tokenBytesCache[id] = b;
    }
    return b;
  }

  idToToken(id: number): string | undefined {
    return this.tok.id_to_token(id);
  }

  tokenToId(token: string): number | undefined {
    return this.tok.token_to_id(token);
  }

  isSpecial(id: number): boolean {
    return this.specialTokenIds.has(id);
  }

  /**
   * The same tokenizer with another chat template (a source string, a list of {name, template},
   * or null for none), like vLLM's `--chat-template`. Shares everything else; costs nothing.
   */
  withChatTemplate(chatTemplate: string | readonly { name: string; template: string }[] | null): LlamaTokenizer {
    const copy = Object.create(LlamaTokenizer.prototype) as LlamaTokenizer;
    Object.assign(copy, this, { chatTemplates: parseChatTemplates(chatTemplate, "chat template"), compiled: new Map() });
    return copy;
  }

  /** Names of the chat templates ("default" for a single template). */
  get chatTemplateNames(): string[] {
    return [...this.chatTemplates.keys()];
  }

  /**
   * Renders the chat template like HF `apply_chat_template(..., tokenize=False)`: variables
   * `messages`, the special tokens (`bos_token`, `eos_token`, ...), `add_generation_prompt`,
   * `tools` (only when given), `extra`, and the globals `raise_exception` and `strftime_now`.
   * A template's `raise_exception(msg)` (or any render failure) becomes a `ChatTemplateError` with that message.
   */
  applyChatTemplate(messages: readonly ChatMessage[] | readonly unknown[], options: ApplyChatTemplateOptions = {}): string {
    const template = this.compile(this.selectTemplate(options));
    // raise_exception and strftime_now are @huggingface/jinja globals (they cannot be redeclared).
    const context: Record<string, unknown> = {
      ...this.specialTokensMap,
      ...(options.extra === undefined ? {} : dropUndefined(options.extra)),
      messages: dropUndefined(messages),
      add_generation_prompt: options.addGenerationPrompt ?? false,
    };
    if (options.tools !== undefined) context.tools = dropUndefined(options.tools);
    try {
      return template.render(context);
    } catch (e) {
      // raise_exception(msg) throws a plain Error(msg): keep the template's own words.
      throw new ChatTemplateError((e as Error).message, { cause: e });
    }
  }

  /**
   * `encode(applyChatTemplate(...), { addSpecialTokens: false })` (the template already writes bos),
   * except that special-token text inside the messages and tools is tokenized as ordinary text (HF's
   * `split_special_tokens` for the content only): message content is data, and `<|eot_id|>` typed by a
   * user or found in a retrieved document must not become a real turn boundary. Only the template's
   * own markup yields control tokens.
   */
  encodeChat(messages: readonly ChatMessage[] | readonly unknown[], options: ApplyChatTemplateOptions = {}): number[] {
    const guard = new ContentGuard(this.addedTokenPattern);
    const guarded = guard.hide(messages) as readonly unknown[];
    const tools = options.tools === undefined ? undefined : (guard.hide(options.tools) as readonly unknown[]);
    const rendered = this.applyChatTemplate(guarded, { ...options, tools });
    if (guard.count === 0) return this.encode(rendered, { addSpecialTokens: false });
    const { text, literal } = guard.reveal(rendered);
    if (this.fast !== null) return this.fast.encode(text, false, literal);
    // The library has no per-range switch: encode the pieces apart, each literal cut after its first
    // character so no added token can match inside it.
    const ids: number[] = [];
    let at = 0;
    for (const [start, end] of literal) {
      if (start > at) ids.push(...this.tok.encode(text.slice(at, start), { add_special_tokens: false }).ids);
      ids.push(...this.tok.encode(text.slice(start, start + 1), { add_special_tokens: false }).ids);
      if (end > start + 1) ids.push(...this.tok.encode(text.slice(start + 1, end), { add_special_tokens: false }).ids);
      at = end;
    }
    if (at < text.length) ids.push(...this.tok.encode(text.slice(at), { add_special_tokens: false }).ids);
    return ids;
  }

  /** Matches the text of any added token (longest first); built on first use. */
  private get addedTokenPattern(): RegExp {
    if (this.addedPattern === undefined) {
      const texts = [...this.addedTokenIds].map((id) => this.idToToken(id)!).filter((t) => t.length > 0);
      texts.sort((a, b) => b.length - a.length);
      this.addedPattern = new RegExp(texts.map(escapeRegExp).join("|"), "g");
    }
    return this.addedPattern;
  }

  private selectTemplate(options: ApplyChatTemplateOptions): string {
    const name = options.chatTemplate;
    if (name !== undefined) {
      const named = this.chatTemplates.get(name);
      if (named !== undefined) return named;
      if (name.includes("{")) return name; // a template source, as HF's chat_template argument allows
      throw new ChatTemplateError(`no chat template named ${JSON.stringify(name)} (have: ${this.chatTemplateNames.join(", ") || "none"})`);
    }
    if (options.tools !== undefined && this.chatTemplates.has("tool_use")) return this.chatTemplates.get("tool_use")!;
    const def = this.chatTemplates.get("default");
    if (def !== undefined) return def;
    if (this.chatTemplates.size === 0) throw new ChatTemplateError(`${this.source}: the tokenizer has no chat_template`);
    throw new ChatTemplateError(`${this.source}: several chat templates (${this.chatTemplateNames.join(", ")}) and none is named "default"`);
  }

  private compile(src: string): Template {
    let t = this.compiled.get(src);
    if (t === undefined) {
      try {
        t = new Template(src);
      } catch (e) {
        throw new ChatTemplateError(`${this.source}: cannot parse the chat template (${(e as Error).message})`, { cause: e });
      }
      this.compiled.set(src, t);
    }
    return t;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize || this.tok.id_to_token(id) === undefined) {
      throw new RangeError(`token id ${id} is outside the vocabulary (size ${this.vocabSize})`);
    }
  }
}

function parseChatTemplates(v: unknown, file: string): Map<string, string> {
  const out = new Map<string, string>();
  if (v === undefined || v === null) return out;
  if (typeof v === "string") {
    out.set("default", v);
    return out;
  }
  if (Array.isArray(v)) {
    for (const entry of v) {
      if (!isObject(entry) || typeof entry.name !== "string" || typeof entry.template !== "string") {
        throw new ModelDirError(file, "chat_template list entries must be {name, template} strings", { field: "chat_template" });
      }
      out.set(entry.name, entry.template);
    }
    return out;
  }
  throw new ModelDirError(file, "chat_template must be a string or a list of {name, template}", { field: "chat_template" });
}

/** tokenizer_config writes special tokens as strings or as AddedToken dicts {content, ...}. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (isObject(v) && typeof v.content === "string") return v.content;
  return undefined;
}

/** JSON-like deep copy without undefined-valued keys: `{tool_calls: undefined}` must not make `'tool_calls' in message` true. */
function dropUndefined<T>(v: T): T {
  if (Array.isArray(v)) return v.map(dropUndefined) as T;
  if (isObject(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) if (x !== undefined) out[k] = dropUndefined(x);
    return out as T;
  }
  return v;
}

async function fileExists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

// ---- byte-level pre-tokenizer speed-up ----

/** GPT-2's byte → printable unicode char mapping (the ByteLevel alphabet). */
const BYTE_TO_CHAR: string[] = (() => {
  const map: string[] = new Array(256);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    map[b] = String.fromCharCode(printable ? b : 256 + n++);
  }
  return map;
})();
const UNICODE_TO_BYTE = new Map(BYTE_TO_CHAR.map((c, b) => [c.charCodeAt(0), b]));

const FAST_CACHE_MAX = 100_000;
/** Longer pre-tokens go to the library's heap-based BPE (the plain loop below is quadratic). */
const FAST_BPE_MAX_SYMBOLS = 64;
const utf8Encoder = new TextEncoder();
const PROBE = "Hello, wörld!  It's 12345678 ünïcödé 😀👍🏽 中文\t\r\n x <|eot_id|>y<|begin_of_text|>  \n\n zzzzzzzzzzzzzzzz";

interface TrieNode {
  next: Map<string, TrieNode>;
  /** Added token ending here: its id. */
  id?: number;
  length?: number;
}

/**
 * Encodes exactly as @huggingface/tokenizers (and HF tokenizers) do for tokenizers shaped like
 * Llama 3's: no normalizer; pre-tokenizer Sequence[Split(regex, Isolated), ByteLevel(no prefix
 * space, no regex)]; BPE (ignore_merges, no byte fallback); post-processor TemplateProcessing.
 *
 *   text ─ added-token trie (longest match) ─┬─ added token → its id
 *                                            └─ other text → regex pieces → cache | byte-level → BPE → ids
 */
class ByteLevelBpeEncoder {
  private readonly cache = new Map<string, number[]>();

  private constructor(
    private readonly tok: Tokenizer,
    private readonly vocab: Map<string, number>,
    private readonly ranks: Map<string, number>,
    private readonly pattern: RegExp,
    private readonly trie: TrieNode,
    private readonly prefix: number[],
    private readonly suffix: number[],
    private readonly ignoreMerges: boolean,
    private readonly unkId: number | undefined,
  ) {}

  /** Null when the tokenizer is not of the supported shape, or the probe disagrees with the library. */
  static tryCreate(json: Record<string, unknown>, tok: Tokenizer): ByteLevelBpeEncoder | null {
    const model = json.model;
    if (json.normalizer !== null && json.normalizer !== undefined) return null;
    if (!isObject(model) || model.type !== "BPE" || model.byte_fallback === true || model.dropout || model.continuing_subword_prefix || model.end_of_word_suffix) return null;
    if (!Array.isArray(model.merges)) return null;

    const pt = json.pre_tokenizer;
    if (!isObject(pt) || pt.type !== "Sequence" || !Array.isArray(pt.pretokenizers) || pt.pretokenizers.length !== 2) return null;
    const [split, byteLevel] = pt.pretokenizers as unknown[];
    if (!isObject(split) || split.type !== "Split" || split.behavior !== "Isolated" || split.invert !== false) return null;
    if (!isObject(byteLevel) || byteLevel.type !== "ByteLevel" || byteLevel.add_prefix_space !== false || byteLevel.use_regex !== false) return null;
    // The library's own translation of the Oniguruma regex, so the pieces are the same.
    const libSplit = (tok.pre_tokenizer as unknown as { tokenizers?: { pattern?: unknown }[] } | null)?.tokenizers?.[0]?.pattern;
    if (!(libSplit instanceof RegExp) || !libSplit.global) return null;

    const added = json.added_tokens;
    if (!Array.isArray(added)) return null;
    const trie: TrieNode = { next: new Map() };
    for (const a of added) {
      if (!isObject(a) || typeof a.content !== "string" || typeof a.id !== "number" || a.content === "") return null;
      if (a.lstrip === true || a.rstrip === true || a.single_word === true) return null;
      let node = trie;
      for (const ch of a.content) {
        let nxt = node.next.get(ch);
        if (nxt === undefined) node.next.set(ch, (nxt = { next: new Map() }));
        node = nxt;
      }
      node.id = a.id;
      node.length = a.content.length;
    }

    const affixes = templateAffixes(json.post_processor);
    if (affixes === null) return null;

    const ranks = new Map<string, number>();
    const merges = model.merges as unknown[];
    for (let i = 0; i < merges.length; i++) {
      const m = merges[i];
      let key: string;
      if (typeof m === "string") {
        if (m.indexOf(" ") !== m.lastIndexOf(" ") || !m.includes(" ")) return null;
        key = m;
      } else if (Array.isArray(m) && m.length === 2 && typeof m[0] === "string" && typeof m[1] === "string" && !m[0].includes(" ") && !m[1].includes(" ")) {
        key = `${m[0]} ${m[1]}`;
      } else return null;
      if (!ranks.has(key)) ranks.set(key, i);
    }

    const libModel = tok.model;
    if (libModel === null) return null;
    const enc = new ByteLevelBpeEncoder(tok, libModel.tokens_to_ids, ranks, libSplit, trie, affixes.prefix, affixes.suffix, model.ignore_merges === true, libModel.unk_token_id);
    for (const special of [false, true]) {
      const want = tok.encode(PROBE, { add_special_tokens: special }).ids;
      const got = enc.encode(PROBE, special);
      if (want.length !== got.length || want.some((id: number, i: number) => id !== got[i])) return null;
    }
    enc.cache.clear();
    return enc;
  }

  /**
   * `literal`: sorted, disjoint [start, end) ranges of `text` in which added tokens are not matched
   * (their text is encoded as ordinary text, together with the text around it).
   */
  encode(text: string, addSpecialTokens: boolean, literal: readonly (readonly [number, number])[] = []): number[] {
    const ids: number[] = addSpecialTokens ? [...this.prefix] : [];
    // Added tokens: longest match at each position, scanning left to right (the library's DictionarySplitter).
    let start = 0;
    let i = 0;
    const n = text.length;
    let r = 0;
    while (i < n) {
      while (r < literal.length && literal[r]![1] <= i) r++;
      if (r < literal.length && literal[r]![0] <= i) {
        i = literal[r]![1];
        continue;
      }
      // A match must end before the next literal range begins.
      const limit = r < literal.length ? literal[r]![0] : n;
      let node: TrieNode | undefined = this.trie.next.get(text[i]!);
      let matchId: number | undefined;
      let matchLen = 0;
      for (let j = i; node !== undefined; ) {
        if (node.id !== undefined) {
          matchId = node.id;
          matchLen = node.length!;
        }
        if (++j >= limit) break;
        node = node.next.get(text[j]!);
      }
      if (matchId !== undefined) {
        if (i > start) this.encodeOrdinary(text.slice(start, i), ids);
        ids.push(matchId);
        i += matchLen;
        start = i;
      } else i++;
    }
    if (start < n) this.encodeOrdinary(start === 0 ? text : text.slice(start), ids);
    if (addSpecialTokens) for (const id of this.suffix) ids.push(id);
    return ids;
  }

  /** Regex pieces, plus the text between matches (Split "Isolated"), each to ids. */
  private encodeOrdinary(text: string, out: number[]): void {
    let prev = 0;
    for (const m of text.matchAll(this.pattern)) {
      const at = m.index!;
      if (prev < at) this.encodePiece(text.slice(prev, at), out);
      if (m[0].length > 0) this.encodePiece(m[0], out);
      prev = at + m[0].length;
    }
    if (prev < text.length) this.encodePiece(text.slice(prev), out);
  }

  private encodePiece(piece: string, out: number[]): void {
    let ids = this.cache.get(piece);
    if (ids === undefined) {
      ids = this.bpe(byteLevel(piece));
      if (this.cache.size >= FAST_CACHE_MAX) this.cache.clear();
      this.cache.set(piece, ids);
    }
    for (let k = 0; k < ids.length; k++) out.push(ids[k]!);
  }

  private bpe(word: string): number[] {
    if (this.ignoreMerges) {
      const whole = this.vocab.get(word);
      if (whole !== undefined) return [whole];
    }
    let parts: string[];
    if (word.length > FAST_BPE_MAX_SYMBOLS) {
      parts = this.tok.model!([word]);
      return this.toIds(parts);
    }
    parts = word.split("");
    // Merge the lowest-ranked adjacent pair (leftmost on ties) until none is mergeable.
    for (;;) {
      let best = Infinity;
      let at = -1;
      for (let k = 0; k + 1 < parts.length; k++) {
        const r = this.ranks.get(parts[k] + " " + parts[k + 1]);
        if (r !== undefined && r < best) {
          best = r;
          at = k;
        }
      }
      if (at < 0) break;
      parts.splice(at, 2, parts[at]! + parts[at + 1]!);
    }
    return this.toIds(parts);
  }

  private toIds(parts: string[]): number[] {
    const ids: number[] = [];
    for (const p of parts) {
      const id = this.vocab.get(p);
      if (id !== undefined) ids.push(id);
      else if (this.unkId !== undefined) ids.push(this.unkId);
    }
    return ids;
  }
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/**
 * Hides added-token text inside message strings behind markers the template carries through
 * untouched (private-use characters around a per-call random tag, so no user text can forge one),
 * then turns the rendered prompt back into the original text plus the ranges that must stay literal.
 * Special-token texts hold no whitespace, so a template's `| trim` acts on them as on the original.
 */
class ContentGuard {
  private readonly tag = `\uE000${Math.random().toString(36).slice(2, 10)}:`;
  private readonly texts: string[] = [];

  constructor(private readonly pattern: RegExp) {}

  get count(): number {
    return this.texts.length;
  }

  hide(value: unknown): unknown {
    if (typeof value === "string") {
      this.pattern.lastIndex = 0;
      if (!this.pattern.test(value)) return value;
      return value.replace(this.pattern, (m) => `${this.tag}${this.texts.push(m) - 1}\uE001`);
    }
    if (Array.isArray(value)) return value.map((v) => this.hide(v));
    if (value !== null && typeof value === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = this.hide(v);
      return out;
    }
    return value;
  }

  reveal(rendered: string): { text: string; literal: [number, number][] } {
    const literal: [number, number][] = [];
    let text = "";
    let at = 0;
    for (;;) {
      const i = rendered.indexOf(this.tag, at);
      if (i < 0) break;
      const close = rendered.indexOf("\uE001", i);
      const index = Number(rendered.slice(i + this.tag.length, close));
      const original = this.texts[index];
      if (close < 0 || original === undefined) break;
      text += rendered.slice(at, i);
      literal.push([text.length, text.length + original.length]);
      text += original;
      at = close + 1;
    }
    return { text: text + rendered.slice(at), literal };
  }
}

/** GPT-2 byte-level form of a string: its UTF-8 bytes, each as a printable char. */
function byteLevel(piece: string): string {
  let s = "";
  for (let i = 0; i < piece.length; i++) {
    const c = piece.charCodeAt(i);
    if (c >= 0x80) {
      s = "";
      for (const b of utf8Encoder.encode(piece)) s += BYTE_TO_CHAR[b];
      return s;
    }
    s += BYTE_TO_CHAR[c];
  }
  return s;
}

/** Ids TemplateProcessing puts before and after a single sequence; null for post-processors we do not mirror. */
function templateAffixes(pp: unknown): { prefix: number[]; suffix: number[] } | null {
  if (pp === null || pp === undefined) return { prefix: [], suffix: [] };
  if (!isObject(pp)) return null;
  if (pp.type === "ByteLevel") return { prefix: [], suffix: [] }; // offsets only
  if (pp.type === "Sequence" && Array.isArray(pp.processors)) {
    let found: { prefix: number[]; suffix: number[] } = { prefix: [], suffix: [] };
    for (const p of pp.processors) {
      const a = templateAffixes(p);
      if (a === null) return null;
      if (a.prefix.length > 0 || a.suffix.length > 0) {
        if (found.prefix.length > 0 || found.suffix.length > 0) return null;
        found = a;
      }
    }
    return found;
  }
  if (pp.type !== "TemplateProcessing" || !Array.isArray(pp.single) || !isObject(pp.special_tokens)) return null;
  const prefix: number[] = [];
  const suffix: number[] = [];
  let seenA = false;
  for (const item of pp.single) {
    if (isObject(item) && isObject(item.SpecialToken)) {
      const st = pp.special_tokens[item.SpecialToken.id as string];
      if (!isObject(st) || !Array.isArray(st.ids) || !st.ids.every((x) => Number.isInteger(x))) return null;
      (seenA ? suffix : prefix).push(...(st.ids as number[]));
    } else if (isObject(item) && isObject(item.Sequence) && item.Sequence.id === "A" && !seenA) {
      seenA = true;
    } else return null;
  }
  return seenA ? { prefix, suffix } : null;
}
