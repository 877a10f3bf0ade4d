import type { ChatCompletionRequest, CompletionRequest } from "@seventy/sdk/protocol";
import { hashString } from "../pool/router";

type Content = string | { type: "text"; text: string }[] | undefined;

function text(content: Content): string {
  if (content === undefined) return "";
  if (typeof content === "string") return content;
  let out = "";
  for (const part of content) out += part.text;
  return out;
}

/**
 * The hash of a conversation's head, for prefix affinity: the messages up to and including the
 * first user message, cut at `maxChars`. Later turns of the same conversation share that head,
 * and so do all conversations behind one long system prompt, so they land where their prefix is
 * already cached.
 */
export function chatPrefixHash(req: ChatCompletionRequest, maxChars: number): number {
  let head = "";
  for (const m of req.messages) {
    head += `${m.role}\u0000${text(m.content as Content)}\u0001`;
    if (m.role === "user" || head.length >= maxChars) break;
  }
  return hashString(head.length > maxChars ? head.slice(0, maxChars) : head);
}

export function completionPrefixHash(req: CompletionRequest, maxChars: number): number {
  const p = req.prompt;
  let head: string;
  if (typeof p === "string") head = p;
  else if (p.length > 0 && typeof p[0] === "string") head = p[0] as string;
  else if (p.length > 0 && Array.isArray(p[0])) head = (p[0] as number[]).slice(0, maxChars / 4).join(",");
  else head = (p as number[]).slice(0, maxChars / 4).join(",");
  return hashString(head.length > maxChars ? head.slice(0, maxChars) : head);
}
