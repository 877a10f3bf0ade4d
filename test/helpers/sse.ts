/** Reads an SSE response to the end: the `data:` payloads in order (JSON-parsed except "[DONE]"). */
export async function readSse(res: Response): Promise<Array<unknown | "[DONE]">> {
  const text = await res.text();
  return parseSse(text);
}

export function parseSse(text: string): Array<unknown | "[DONE]"> {
  const events: Array<unknown | "[DONE]"> = [];
  for (const block of text.split("\n\n")) {
    if (!block.trim()) continue;
    const data = block
      .split("\n")
      .filter((l) => l.startsWith("data:"))
      .map((l) => l.slice(5).trimStart())
      .join("\n");
    events.push(data === "[DONE]" ? "[DONE]" : JSON.parse(data));
  }
  return events;
}

/** Concatenated `delta.content` of choice `index` in a chat stream. */
export function chatStreamText(events: Array<unknown>, index = 0): string {
  let out = "";
  for (const ev of events) {
    if (ev === "[DONE]") continue;
    const choices = (ev as { choices?: Array<{ index: number; delta?: { content?: string | null } }> }).choices ?? [];
    for (const c of choices) if (c.index === index && c.delta?.content) out += c.delta.content;
  }
  return out;
}

export async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}
