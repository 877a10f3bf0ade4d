import { errorBody } from "@seventy/sdk/protocol";
import { normalizeUpstreamError } from "./errors.js";

export interface ForwardOptions {
  upstream: string;
  path: string;
  method: string;
  body?: Uint8Array;
  /** Aborted when the client leaves: the upstream request is cancelled with it. */
  signal: AbortSignal;
  requestId: string;
  apiKey?: string;
  /** Called once when the request is over (answered, failed, or the client left). */
  onDone: () => void;
}

const SSE_ERROR = (message: string) =>
  new TextEncoder().encode(
    `data: ${JSON.stringify(errorBody(502, message, { type: "server_error", code: "upstream_disconnected" }))}\n\n`,
  );

/**
 * Sends one request on to the engine and its answer back: JSON and SSE bytes untouched, errors in
 * OpenAI's shape. The upstream fetch is cancelled when the client leaves, before or during the
 * answer; an upstream that fails mid-stream ends the stream with an in-band error event and no
 * `[DONE]`, as a seventy node does.
 */
export async function forward(opts: ForwardOptions): Promise<Response> {
  const abort = new AbortController();
  let finished = false;
  const done = () => {
    if (finished) return;
    finished = true;
    opts.signal.removeEventListener("abort", onClientAbort);
    opts.onDone();
  };
  const onClientAbort = () => {
    abort.abort();
    done();
  };
  if (opts.signal.aborted) onClientAbort();
  else opts.signal.addEventListener("abort", onClientAbort);

  let res: Response;
  try {
    res = await fetch(new URL(opts.path, opts.upstream), {
      method: opts.method,
      body: opts.body && opts.body.byteLength > 0 ? opts.body : undefined,
      headers: {
        "content-type": "application/json",
        accept: "application/json, text/event-stream",
        "x-request-id": opts.requestId,
        ...(opts.apiKey ? { authorization: `Bearer ${opts.apiKey}` } : {}),
      },
      signal: abort.signal,
    });
  } catch (err) {
    done();
    const reason = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
    return json(502, errorBody(502, `The model server is unreachable (${reason}).`, { code: "upstream_unreachable" }), opts.requestId);
  }

  if (!res.ok) {
    const text = await res.text().catch(() => "");
    done();
    const { status, body } = normalizeUpstreamError(res.status, text);
    const headers: Record<string, string> = {};
    const retryAfter = res.headers.get("retry-after");
    if (retryAfter) headers["retry-after"] = retryAfter;
    return json(status, body, opts.requestId, headers);
  }

  const contentType = res.headers.get("content-type") ?? "application/json";
  const isStream = contentType.startsWith("text/event-stream");
  const reader = res.body!.getReader();
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done: end, value } = await reader.read();
        if (end) {
          controller.close();
          done();
        } else controller.enqueue(value);
      } catch (err) {
        if (isStream && !opts.signal.aborted) controller.enqueue(SSE_ERROR(`The model server stopped mid-stream: ${(err as Error).message}`));
        controller.close();
        done();
      }
    },
    cancel() {
      // The client left mid-answer: stop the engine's request too.
      abort.abort();
      void reader.cancel().catch(() => {});
      done();
    },
  });
  const headers: Record<string, string> = { "content-type": contentType, "x-request-id": opts.requestId };
  if (isStream) {
    headers["cache-control"] = "no-cache";
    headers["content-encoding"] = "identity";
  }
  return new Response(body, { status: res.status, headers });
}

function json(status: number, body: unknown, requestId: string, extra: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json", "x-request-id": requestId, ...extra } });
}
