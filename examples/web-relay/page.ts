/// <reference lib="dom" />
// The browser side: posts the conversation, renders the streamed answer token by token.
import { APIUserAbortError, Seventy, type ChatCompletionStream, type ChatMessage } from "@seventy/sdk";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const log = $("log");
const status = $("status");
const prompt = $<HTMLInputElement>("prompt");
const stop = $<HTMLButtonElement>("stop");
const history: ChatMessage[] = [];
let current: ChatCompletionStream | undefined;

function line(cls: string, text = ""): HTMLParagraphElement {
  const p = document.createElement("p");
  p.className = cls;
  p.textContent = text;
  log.append(p);
  return p;
}

stop.addEventListener("click", () => current?.abort());

$("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = prompt.value.trim();
  if (!text || current) return;
  prompt.value = "";
  line("user", text);
  history.push({ role: "user", content: text });
  const answer = line("assistant");
  status.textContent = "…";
  status.dataset.state = "streaming";
  stop.disabled = false;
  try {
    const res = await fetch("/api/chat", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ messages: history }),
    });
    if (!res.ok) throw new Error(((await res.json()) as { error?: { message?: string } }).error?.message ?? res.statusText);
    current = Seventy.fromResponse(res);
    let tokens = 0;
    for await (const delta of current.textStream) {
      answer.textContent += delta;
      status.textContent = `${++tokens} pieces`;
    }
    const { usage } = await current.finalCompletion();
    history.push({ role: "assistant", content: answer.textContent ?? "" });
    status.textContent = usage ? `${usage.completion_tokens} tokens (${usage.prompt_tokens} in prompt)` : "done";
    status.dataset.state = "done";
  } catch (err) {
    history.pop();
    const stopped = err instanceof APIUserAbortError;
    status.textContent = stopped ? "stopped" : `error: ${(err as Error).message}`;
    status.dataset.state = stopped ? "stopped" : "error";
  } finally {
    current = undefined;
    stop.disabled = true;
  }
});
