import { build } from "esbuild";
import { gzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const index = fileURLToPath(new URL("./index.ts", import.meta.url));

async function bundle(source: string): Promise<{ code: string; gzip: number; inputs: string[] }> {
  const result = await build({
    stdin: { contents: source, resolveDir: fileURLToPath(new URL(".", import.meta.url)), loader: "ts" },
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  const code = result.outputFiles[0]!.text;
  // Modules that put bytes in the output (the metafile also lists modules parsed and then shaken off).
  const output = Object.values(result.metafile.outputs)[0]!;
  const inputs = Object.entries(output.inputs).filter(([, v]) => v.bytesInOutput > 0).map(([k]) => k);
  return { code, gzip: gzipSync(code, { level: 9 }).length, inputs };
}

describe("bundle", () => {
  it("a client that streams a chat completion stays small and leaves zod and the admin client out", async () => {
    const { gzip, inputs } = await bundle(`
      import { Seventy } from ${JSON.stringify(index)};
      const client = new Seventy({ baseURL: "https://llm.example.com/v1", apiKey: "sk" });
      const stream = await client.chat.completions.create({ model: "m", messages: [{ role: "user", content: "hi" }], stream: true });
      for await (const text of stream.textStream) console.log(text);
      console.log((await stream.finalCompletion()).usage);
    `);
    expect(inputs.filter((f) => f.includes("zod"))).toEqual([]);
    expect(inputs.filter((f) => f.includes("/protocol/") || f.includes("/admin/"))).toEqual([]);
    expect(gzip).toBeLessThan(12 * 1024);
  });

  it("a browser page that only rebuilds a relayed stream is smaller still", async () => {
    const { gzip, inputs } = await bundle(`
      import { Seventy } from ${JSON.stringify(index)};
      const stream = Seventy.fromResponse(await fetch("/api/chat", { method: "POST" }));
      for await (const text of stream.textStream) document.body.append(text);
    `);
    expect(inputs.filter((f) => f.includes("zod"))).toEqual([]);
    expect(gzip).toBeLessThan(12 * 1024);
  });

  it("runs on Web APIs alone: no Node built-in is imported anywhere in the SDK", async () => {
    const { code } = await bundle(`export * from ${JSON.stringify(index)};`);
    expect(code).not.toMatch(/\bfrom\s*"node:|require\(|\bprocess\.env\b|\bBuffer\b/);
  });
});
