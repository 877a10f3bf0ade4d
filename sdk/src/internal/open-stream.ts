import { SSESource } from "../core/source.js";
import type { StreamInit } from "../core/stream.js";
import { APIConnectionError } from "../core/errors.js";
import type { ClientContext } from "./context.js";
import type { RequestOptions } from "./transport.js";

interface StreamParams {
  stream_options?: { include_usage?: boolean | null } | null;
}

/**
 * POSTs a streaming request and wraps the SSE body. Usage is always requested so the assembled
 * completion has it; `hideUsageChunk` keeps the extra chunk out of the caller's loop when the
 * caller did not ask for it.
 */
export async function openStream<P extends StreamParams, S>(
  client: ClientContext,
  path: string,
  params: P,
  options: RequestOptions | undefined,
  make: (source: SSESource<never>, init: StreamInit) => S,
  validate: ((chunk: unknown) => unknown) | undefined,
): Promise<S> {
  const asked = params.stream_options?.include_usage === true;
  const body = { ...params, stream: true, stream_options: { ...params.stream_options, include_usage: true } };
  const { response, abortable, watchdog, idleTimeout } = await client.transport.open(
    { method: "POST", path, body, stream: true },
    options,
  );
  if (!response.body) {
    watchdog.stop();
    abortable.release();
    throw new APIConnectionError("The server answered a stream request without a body.", { headers: response.headers });
  }
  const source = new SSESource<never>(response.body, {
    abortable,
    watchdog,
    idleTimeoutMs: idleTimeout,
    headers: response.headers,
    validate,
  });
  return make(source, { response, hideUsageChunk: !asked });
}
