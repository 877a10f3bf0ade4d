import { errorBody } from "@seventy/sdk/protocol";

/** The one error type of the HTTP layer: knows its status and how to become an OpenAI error body. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly opts: { param?: string | null; code?: string | null; type?: string; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.name = "HttpError";
  }

  toResponse(extraHeaders: Record<string, string> = {}): Response {
    return new Response(JSON.stringify(errorBody(this.status, this.message, this.opts)), {
      status: this.status,
      headers: { "content-type": "application/json", ...this.opts.headers, ...extraHeaders },
    });
  }
}
