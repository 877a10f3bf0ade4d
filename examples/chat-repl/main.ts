#!/usr/bin/env node
/**
 * A terminal chat that streams the answer token by token.
 *
 *   SEVENTY_BASE_URL=http://127.0.0.1:8787/v1 SEVENTY_API_KEY=sk-... node examples/dist/chat-repl/main.js
 *
 * Ctrl-C while an answer streams stops that answer (the request is aborted); Ctrl-C or Ctrl-D at
 * the prompt quits. `/reset` starts a new conversation.
 */
import { createInterface } from "node:readline/promises";
import { APIUserAbortError, Seventy, SeventyError, type ChatMessage } from "@seventy/sdk";

const client = new Seventy(); // SEVENTY_BASE_URL and SEVENTY_API_KEY
const model = process.env.SEVENTY_MODEL ?? (await client.models.list()).data[0]?.id;
if (!model) throw new Error("The edge serves no model.");
const system: ChatMessage = { role: "system", content: process.env.SEVENTY_SYSTEM ?? "You are a helpful assistant." };
let history: ChatMessage[] = [system];

const rl = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
let current: AbortController | undefined;
// Ctrl-C: stop the answer being streamed, or quit at the prompt. A terminal delivers it to
// readline; a signal from elsewhere (kill -INT) reaches the process.
const interrupt = () => {
  if (current) current.abort();
  else rl.close();
};
rl.on("SIGINT", interrupt);
process.on("SIGINT", interrupt);

console.log(`model: ${model} — /reset for a new conversation, Ctrl-D to quit`);
rl.setPrompt("> ");
rl.prompt();
// Lines are read as a stream, so input piped in (or typed ahead during an answer) waits its turn.
for await (const input of rl) {
  const line = input.trim();
  if (line === "/reset") history = [system];
  else if (line !== "") await answer(line);
  rl.prompt();
}

async function answer(question: string): Promise<void> {
  history.push({ role: "user", content: question });
  current = new AbortController();
  try {
    const stream = await client.chat.completions.create(
      { model: model!, messages: history, stream: true, max_tokens: Number(process.env.SEVENTY_MAX_TOKENS ?? 512) },
      { signal: current.signal },
    );
    for await (const text of stream.textStream) process.stdout.write(text);
    const { choices, usage } = await stream.finalCompletion();
    history.push({ role: "assistant", content: choices[0]?.message.content ?? "" });
    process.stdout.write(`\n[${usage?.prompt_tokens} prompt + ${usage?.completion_tokens} completion tokens]\n`);
  } catch (err) {
    history.pop(); // the question goes unanswered
    if (err instanceof APIUserAbortError) process.stdout.write("\n[stopped]\n");
    else if (err instanceof SeventyError) process.stdout.write(`\n[error: ${err.message}]\n`);
    else throw err;
  } finally {
    current = undefined;
  }
}
