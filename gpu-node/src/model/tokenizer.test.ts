import { Tokenizer } from "@huggingface/tokenizers";
import { beforeAll, describe, expect, it } from "vitest";
import { ChatTemplateError } from "./errors.js";
import { llama31TokenizerFiles } from "./tiny-model.js";
import { LlamaTokenizer } from "./tokenizer.js";

// The 9 MB tokenizer.json is parsed once for the whole file.
let files: Awaited<ReturnType<typeof llama31TokenizerFiles>>;
let tok: LlamaTokenizer;
let loadMs = 0;
beforeAll(async () => {
  files = await llama31TokenizerFiles();
  const t0 = performance.now();
  tok = new LlamaTokenizer({ ...files, source: "tiny-llama-3.1" });
  loadMs = performance.now() - t0;
});

const SAMPLES = [
  "Hello world",
  "Emoji: 😀👍🏽 and a family 👨‍👩‍👧‍👦 done",
  "中文字符测试，日本語のテキスト、한국어 텍스트",
  "Ünïcödé — “quotes” … ½ ∑ 𝔘 ﬁ",
  "tabs\tand\nnewlines\r\n  trailing   ",
  "It's 12345678 o'clock, we'll see; they'RE here.  ",
  "code: `for (let i = 0; i < n; i++) { x += a[i] * 2; }`\n\n\n",
  " leading space, , double  spaces ,and punctuation!!",
];

describe("LlamaTokenizer", () => {
  it("has the Llama 3.1 special tokens (ids 128004/128008/128010 renamed)", () => {
    expect(tok.idToToken(128004)).toBe("<|finetune_right_pad_id|>");
    expect(tok.idToToken(128008)).toBe("<|eom_id|>");
    expect(tok.idToToken(128010)).toBe("<|python_tag|>");
    expect(tok.tokenToId("<|eom_id|>")).toBe(128008);
    expect(tok.tokenToId("<|reserved_special_token_4|>")).toBeUndefined();
    expect(tok.vocabSize).toBe(128256);
    expect([tok.bosToken, tok.bosTokenId, tok.eosToken, tok.eosTokenId]).toEqual(["<|begin_of_text|>", 128000, "<|eot_id|>", 128009]);
    expect(tok.isSpecial(128009) && !tok.isSpecial(9906)).toBe(true);
  });

  it("encodes like HF", () => {
    expect(tok.encode("Hello world", { addSpecialTokens: false })).toEqual([9906, 1917]);
    expect(tok.encode("Hello world")).toEqual([128000, 9906, 1917]);
    expect(tok.encode("")).toEqual([128000]);
    expect(tok.encode("", { addSpecialTokens: false })).toEqual([]);
  });

  it("parses special tokens written in the text as one id", () => {
    expect(tok.encode("a<|eot_id|>b", { addSpecialTokens: false })).toEqual([64, 128009, 65]);
    expect(tok.encode("<|python_tag|>x<|eom_id|>", { addSpecialTokens: false })).toEqual([128010, 87, 128008]);
    expect(tok.encode("<|start_header_id|>user<|end_header_id|>\n\n", { addSpecialTokens: false })).toEqual([128006, 882, 128007, 271]);
  });

  it("decodes back to the exact text (emoji, CJK, whitespace)", () => {
    for (const s of SAMPLES) expect(tok.decode(tok.encode(s, { addSpecialTokens: false }))).toBe(s);
    expect(tok.decode(tok.encode("Hi<|eot_id|>"))).toBe("<|begin_of_text|>Hi<|eot_id|>");
    expect(tok.decode(tok.encode("Hi<|eot_id|>"), { skipSpecialTokens: true })).toBe("Hi");
    expect(tok.decode([])).toBe("");
    expect(tok.decode([128000], { skipSpecialTokens: true })).toBe("");
    expect(() => tok.decode([128256])).toThrow(RangeError);
    expect(() => tok.decode([-1])).toThrow(RangeError);
  });

  it("gives each token's raw bytes (for streaming detokenization)", () => {
    const text = "naïve 😀 中";
    const ids = tok.encode(text, { addSpecialTokens: false });
    const bytes = Buffer.concat(ids.map((id) => tok.tokenBytes(id)));
    expect(bytes.toString("utf8")).toBe(text);
    expect(Buffer.from(tok.tokenBytes(128009)).toString()).toBe("<|eot_id|>");
    // A lone token of a 4-byte character decodes to U+FFFD, as the DESIGN notes say.
    const emoji = tok.encode("😀", { addSpecialTokens: false });
    if (emoji.length > 1) expect(tok.decode([emoji[0]!])).toContain("\uFFFD");
  });

  it("matches the unmodified @huggingface/tokenizers encode and decode exactly", () => {
    expect(tok.fastEncode).toBe(true);
    const plain = new Tokenizer(files.tokenizerJson, { ...files.tokenizerConfig, clean_up_tokenization_spaces: false });
    const corpus = [...SAMPLES, SAMPLES.join("<|eot_id|>"), "x".repeat(300), "\u00a0\u2003 nbsp\u3000ideographic", "ⅷ ١٢٣ 𝟘𝟙 ², ½", "\ud83d"];
    // Plus seeded random strings over awkward characters: whitespace runs, digits, contractions,
    // combining marks, ZWJ emoji, CJK, lone surrogates, fragments of special tokens, long runs.
    const palette = [..."aZ '’sdtll0123456789.,;:!?-_()[]{}<>|/\\\"\t\n\r  \u00a0éßøñü\u0301\u0308中文日本語한국어😀👍🏽👨‍👩‍👧\u200d\ud83d\udc00\ud800ΩЖ١٢"];
    const pieces = [...palette, "<|eot_id|>", "<|eot", "id|>", "<|begin_of_text|>", "'s", "'LL", "   ", "\n\n", "1234567", "x".repeat(70), " ".repeat(80), "ab".repeat(40)];
    let seed = 12345;
    const rand = (k: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % k;
    };
    for (let r = 0; r < 300; r++) {
      let s = "";
      const len = 1 + rand(40);
      for (let k = 0; k < len; k++) s += pieces[rand(pieces.length)];
      corpus.push(s);
    }
    for (const s of corpus) {
      const ids = plain.encode(s, { add_special_tokens: true }).ids;
      expect(tok.encode(s), s).toEqual(ids);
      expect(tok.decode(ids), s).toBe(plain.decode(ids, { skip_special_tokens: false }));
      expect(tok.decode(ids, { skipSpecialTokens: true }), s).toBe(plain.decode(ids, { skip_special_tokens: true }));
    }
  });

  it("encodes a ~2k-token prompt fast (prints the timing)", () => {
    const para =
      "The quick brown fox jumps over the lazy dog. In 2024, researchers at 17 labs published results on large-language-model inference, " +
      "covering paged attention, continuous batching and speculative decoding (see §3.2). Prices: $1,299.99 → €1.199,00; ratio 3:2. ";
    let text = "";
    let i = 0;
    while (tok.encode(text, { addSpecialTokens: false }).length < 2000) text += `${para}[${i++}] `;
    const n = tok.encode(text, { addSpecialTokens: false }).length;
    const fresh = Array.from({ length: 700 }, (_, k) => `w${((k * 2654435761) >>> 0).toString(36)}`).join(" ");
    const time = (s: string, reps: number) => {
      const t0 = performance.now();
      for (let r = 0; r < reps; r++) tok.encode(s, { addSpecialTokens: false });
      return ((performance.now() - t0) / reps) * 1000;
    };
    time(text, 5);
    const warm = time(text, 20);
    const cold = time(fresh, 1); // words never seen before: no cache hits
    const nFresh = tok.encode(fresh, { addSpecialTokens: false }).length;
    console.log(`tokenizer: construct ${loadMs.toFixed(0)} ms; encode ${n} tokens ${warm.toFixed(0)} µs (${(warm / n).toFixed(2)} µs/token); unseen words ${nFresh} tokens ${cold.toFixed(0)} µs`);
    expect(warm).toBeLessThan(20_000);
  });
});

const SYSTEM_USER =
  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
  "Cutting Knowledge Date: December 2023\n" +
  "Today Date: 26 Jul 2024\n\n" +
  "You are a helpful assistant.<|eot_id|>" +
  "<|start_header_id|>user<|end_header_id|>\n\n" +
  "What is 2+2?<|eot_id|>" +
  "<|start_header_id|>assistant<|end_header_id|>\n\n";

const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

// Rendered by Python jinja2 with transformers' settings (trim_blocks, lstrip_blocks, tojson ensure_ascii=False).
const TOOLS_CONVERSATION =
  "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n" +
  "Environment: ipython\n" +
  "Cutting Knowledge Date: December 2023\n" +
  "Today Date: 26 Jul 2024\n\n" +
  "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n" +
  "Given the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n" +
  'Respond in the format {"name": function name, "parameters": dictionary of argument name and its value}.Do not use variables.\n\n' +
  '{\n    "type": "function",\n    "function": {\n        "name": "get_weather",\n        "description": "Get the weather",\n' +
  '        "parameters": {\n            "type": "object",\n            "properties": {\n                "city": {\n                    "type": "string"\n                }\n' +
  '            },\n            "required": [\n                "city"\n            ]\n        }\n    }\n}\n\n' +
  "Weather in Paris?<|eot_id|>" +
  "<|start_header_id|>assistant<|end_header_id|>\n\n" +
  '{"name": "get_weather", "parameters": {"city": "Paris", "unit": "°C"}}<|eot_id|>' +
  "<|start_header_id|>ipython<|end_header_id|>\n\n" +
  '"22 °C, sunny"<|eot_id|>' + // a string is "iterable" to the template, so tool output is JSON-quoted, as in HF
  "<|start_header_id|>assistant<|end_header_id|>\n\n";

describe("applyChatTemplate", () => {
  const systemUser = [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "What is 2+2?" },
  ];

  it("renders a system + user conversation exactly as Llama 3.1 expects", () => {
    expect(tok.applyChatTemplate(systemUser, { addGenerationPrompt: true })).toBe(SYSTEM_USER);
    expect(tok.applyChatTemplate(systemUser)).toBe(SYSTEM_USER.slice(0, -"<|start_header_id|>assistant<|end_header_id|>\n\n".length));
  });

  it("takes date_string and other variables from extra", () => {
    const out = tok.applyChatTemplate(systemUser, { addGenerationPrompt: true, extra: { date_string: "01 Dec 2026" } });
    expect(out).toBe(SYSTEM_USER.replace("26 Jul 2024", "01 Dec 2026"));
  });

  it("renders the tools branch (tool definitions, a tool call, a tool result)", () => {
    const messages = [
      { role: "user", content: "Weather in Paris?" },
      { role: "assistant", content: undefined, tool_calls: [{ type: "function", function: { name: "get_weather", arguments: { city: "Paris", unit: "°C" } } }] },
      { role: "tool", content: "22 °C, sunny", tool_call_id: undefined },
    ];
    expect(tok.applyChatTemplate(messages, { addGenerationPrompt: true, tools: [WEATHER_TOOL] })).toBe(TOOLS_CONVERSATION);
  });

  it("turns the template's raise_exception into a ChatTemplateError with its message", () => {
    const call = { type: "function", function: { name: "f", arguments: {} } };
    const messages = [
      { role: "user", content: "hi" },
      { role: "assistant", tool_calls: [call, call] },
    ];
    expect(() => tok.applyChatTemplate(messages)).toThrow(ChatTemplateError);
    expect(() => tok.applyChatTemplate(messages)).toThrow("This model only supports single tool-calls at once!");
    expect(() => tok.applyChatTemplate([], { tools: [WEATHER_TOOL] })).toThrow(/Cannot put tools in the first user message/);
  });

  it("encodeChat encodes the rendered text without adding a second bos", () => {
    const ids = tok.encodeChat(systemUser, { addGenerationPrompt: true });
    expect(ids).toEqual(tok.encode(SYSTEM_USER, { addSpecialTokens: false }));
    expect(ids.filter((id) => id === 128000)).toHaveLength(1);
    expect(ids.slice(0, 4)).toEqual([128000, 128006, 9125, 128007]);
    expect(ids.slice(-4)).toEqual([128006, 78191, 128007, 271]);
  });

  it("picks default / tool_use from a list of named templates", () => {
    const multi = tok.withChatTemplate([
      { name: "default", template: "D{{ messages | length }}{% if tools is defined %}T{% endif %}" },
      { name: "tool_use", template: "U{{ tools | length }}" },
    ]);
    expect(multi.chatTemplateNames).toEqual(["default", "tool_use"]);
    expect(multi.applyChatTemplate(systemUser)).toBe("D2");
    expect(multi.applyChatTemplate(systemUser, { tools: [WEATHER_TOOL] })).toBe("U1");
    expect(multi.applyChatTemplate(systemUser, { chatTemplate: "default", tools: [WEATHER_TOOL] })).toBe("D2T");
    expect(() => multi.applyChatTemplate(systemUser, { chatTemplate: "nope" })).toThrow(/no chat template named "nope"/);
    expect(() => tok.withChatTemplate(null).applyChatTemplate(systemUser)).toThrow(/has no chat_template/);
    const separate = tok.withChatTemplate("S{{ bos_token }}");
    expect(separate.applyChatTemplate(systemUser)).toBe("S<|begin_of_text|>");
    expect(tok.applyChatTemplate(systemUser, { addGenerationPrompt: true })).toBe(SYSTEM_USER); // the original is untouched
  });
});
