/**
 * A route handler that streams a chat completion to its caller with `stream.toResponse()`.
 *
 * The signature is the Web standard one, so the same function is a Next.js App Router route
 * (`app/api/chat/route.ts`), a Hono handler (`app.post("/api/chat", (c) => POST(c.req.raw))`),
 * a Worker's `fetch`, or `Deno.serve(POST)` / `Bun.serve({ fetch: POST })`.
 */
import { APIError, Seventy, type ChatMessage } from "@seventy/sdk";

let client: Seventy | undefined;
let model: Promise<string> | undefined;
const seventy = () => (client ??= new Seventy()); // SEVENTY_BASE_URL and SEVENTY_API_KEY
/** SEVENTY_MODEL, else the first model the edge serves. */
const modelName = () =>
  (model ??= process.env.SEVENTY_MODEL
    ? Promise.resolve(process.env.SEVENTY_MODEL)
    : seventy().models.list().then((l) => l.data[0]?.id ?? "default"));

export async function POST(request: Request): Promise<Response> {
  let messages: ChatMessage[];
  try {
    ({ messages } = (await request.json()) as { messages: ChatMessage[] });
    if (!Array.isArray(messages) || messages.length === 0) throw new Error();
  } catch {
    return Response.json({ error: { message: "Send { messages: [...] }." } }, { status: 400 });
  }
  try {
    const stream = await seventy().chat.completions.create(
      { model: await modelName(), messages, stream: true, max_tokens: 256 },
      // The browser going away aborts the model call too.
      { signal: request.signal },
    );
    return stream.toResponse();
  } catch (err) {
    // Errors before the stream starts keep their status (401, 429, …) for the caller.
    if (err instanceof APIError && err.status) {
      return Response.json({ error: err.error ?? { message: err.message } }, { status: err.status });
    }
    throw err;
  }
}
