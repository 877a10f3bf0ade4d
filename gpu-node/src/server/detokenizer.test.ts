import { readFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { defaultTinyModelDir, LlamaTokenizer } from "../model/index.js";
import { ByteLevelDetokenizer, GenericDetokenizer, TokenByteTable } from "./detokenizer.js";

let table: TokenByteTable;
let tokenizer: LlamaTokenizer;

beforeAll(async () => {
  const dir = defaultTinyModelDir();
  table = TokenByteTable.fromTokenizerJson(JSON.parse(readFileSync(join(dir, "tokenizer.json"), "utf8")))!;
  tokenizer = await LlamaTokenizer.fromDir(dir);
});

const samples = [
  "Hello, world! Plain ASCII with  two spaces.",
  "Emoji: 😀👍🏽 and a family 👨‍👩‍👧‍👦 done",
  "中文字符测试，日本語のテキスト、한국어 텍스트",
  "Ünïcödé — “quotes” … ½ ∑ 𝔘",
  "tabs\tand\nnewlines\r\n",
];

describe("streaming detokenization", () => {
  it("builds a byte table covering the whole vocabulary", () => {
    expect(table.size).toBe(128256);
    expect(table.specialIds.has(128009)).toBe(true);
  });

  for (const text of samples) {
    it(`streams ${JSON.stringify(text.slice(0, 20))} token by token without U+FFFD and equal to decode()`, () => {
      const ids = tokenizer.encode(text, { addSpecialTokens: false });
      const detok = new ByteLevelDetokenizer(table);
      let out = "";
      for (const id of ids) {
        const piece = detok.push(id);
        expect(piece).not.toContain("\uFFFD");
        out += piece;
      }
      out += detok.flush();
      expect(out).toBe(text);
      expect(out).toBe(tokenizer.decode(ids, { skipSpecialTokens: true }));
    });
  }

  it("holds back a character split across tokens until it is complete", () => {
    const ids = tokenizer.encode("😀", { addSpecialTokens: false });
    expect(ids.length).toBeGreaterThan(1); // the emoji really is split over byte tokens
    const detok = new ByteLevelDetokenizer(table);
    const pieces = ids.map((id) => detok.push(id));
    expect(pieces.slice(0, -1).join("")).toBe("");
    expect(pieces.at(-1)).toBe("😀");
  });

  it("skips special tokens", () => {
    const detok = new ByteLevelDetokenizer(table);
    expect(detok.push(128009)).toBe("");
  });

  it("the generic fallback gives the same text", () => {
    const text = samples[1]!;
    const ids = tokenizer.encode(text, { addSpecialTokens: false });
    const detok = new GenericDetokenizer((x) => tokenizer.decode(x, { skipSpecialTokens: true }));
    let out = "";
    for (const id of ids) {
      const p = detok.push(id);
      expect(p).not.toContain("\uFFFD");
      out += p;
    }
    expect(out + detok.flush()).toBe(text);
  });

  it("an incomplete character at the end becomes U+FFFD on flush, as HF decodes it", () => {
    const ids = tokenizer.encode("😀", { addSpecialTokens: false });
    const detok = new ByteLevelDetokenizer(table);
    detok.push(ids[0]!);
    expect(detok.flush()).toContain("\uFFFD");
  });
});
