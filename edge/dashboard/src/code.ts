/**
 * "Copy as code": the playground's request as a program, for @seventy/sdk, the openai client and
 * curl. The key is never written out: each reads it from SEVENTY_API_KEY.
 */

export interface ChatRequest {
  model: string;
  messages: { role: "system" | "user" | "assistant"; content: string }[];
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
}

export type CodeFlavor = "sdk" | "openai" | "curl";

/** The request's parameters as an object literal (JSON is one). */
function params(req: ChatRequest): string {
  return JSON.stringify({ ...req, stream: true }, null, 2);
}

export function codeFor(flavor: CodeFlavor, baseURL: string, req: ChatRequest): string {
  switch (flavor) {
    case "sdk":
      return `import { Seventy } from "@seventy/sdk";

const client = new Seventy({ baseURL: ${JSON.stringify(baseURL)}, apiKey: process.env.SEVENTY_API_KEY });
const stream = await client.chat.completions.create(${params(req)});
for await (const text of stream.textStream) process.stdout.write(text);
const { usage } = await stream.finalCompletion();
console.log("\\n", usage);
`;
    case "openai":
      return `import OpenAI from "openai";

const client = new OpenAI({ baseURL: ${JSON.stringify(baseURL)}, apiKey: process.env.SEVENTY_API_KEY });
const stream = await client.chat.completions.create(${params(req)});
for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? "");
`;
    case "curl": {
      const body = JSON.stringify({ ...req, stream: true }).replace(/'/g, `'\\''`);
      return `curl -N ${baseURL}/chat/completions \\
  -H "Authorization: Bearer $SEVENTY_API_KEY" \\
  -H "Content-Type: application/json" \\
  -d '${body}'
`;
    }
  }
}
