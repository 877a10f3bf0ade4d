/**
 * A Cloudflare Worker that calls the edge through the SDK.
 *
 * Bound to the edge by a service binding (`SEVENTY`), it uses `Seventy.fromBinding`: no public HTTP
 * hop, same API. Without the binding it calls `SEVENTY_BASE_URL` over HTTP. Either way the edge
 * checks `SEVENTY_API_KEY` and its limits.
 *
 *   POST /chat  { "messages": [...], "max_tokens"?: n }  → the answer streamed as SSE (stream.toResponse())
 *   GET  /ask?q=...                    → the answer as JSON, with usage
 */
import { APIError, Seventy, type ChatMessage, type ServiceBinding } from "@seventy/sdk";

export interface Env {
  SEVENTY?: ServiceBinding;
  SEVENTY_BASE_URL?: string;
  SEVENTY_API_KEY: string;
  SEVENTY_MODEL: string;
}

function clientFor(env: Env): Seventy {
  // Someone is waiting on this Worker: sit out a short Retry-After, but answer a long one at once
  // (the 429 goes back to the caller) rather than hold the request for up to a minute.
  const options = { apiKey: env.SEVENTY_API_KEY, maxRetryDelay: 2_000 };
  if (env.SEVENTY) return Seventy.fromBinding(env.SEVENTY, options);
  return new Seventy({ ...options, baseURL: env.SEVENTY_BASE_URL });
}

function errorResponse(err: unknown): Response {
  if (err instanceof APIError && err.status) {
    return Response.json({ error: { message: err.message, code: err.code ?? null, request_id: err.requestId ?? null } }, { status: err.status });
  }
  return Response.json({ error: { message: err instanceof Error ? err.message : String(err) } }, { status: 502 });
}

export default {
  async fetch(request: Request, env: Env): Promise<Response> {
    const url = new URL(request.url);
    const client = clientFor(env);
    try {
      if (request.method === "POST" && url.pathname === "/chat") {
        const { messages, max_tokens } = (await request.json()) as { messages: ChatMessage[]; max_tokens?: number };
        const stream = await client.chat.completions.create(
          { model: env.SEVENTY_MODEL, messages, stream: true, max_tokens: Math.min(max_tokens ?? 64, 1024) },
          { signal: request.signal },
        );
        return stream.toResponse();
      }
      if (request.method === "GET" && url.pathname === "/ask") {
        const completion = await client.chat.completions.create({
          model: env.SEVENTY_MODEL,
          messages: [{ role: "user", content: url.searchParams.get("q") ?? "Hello" }],
          max_tokens: 64,
        });
        return Response.json({ answer: completion.choices[0]?.message.content, usage: completion.usage });
      }
      return new Response("Not found", { status: 404 });
    } catch (err) {
      return errorResponse(err);
    }
  },
};
