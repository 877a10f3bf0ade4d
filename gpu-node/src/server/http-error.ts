import { errorBody, zodErrorBody } from "@seventy/sdk/protocol";

/**
 * Tokens a request really used, on every response the API routes send: "<prompt>,<completion>",
 * and on answers ",<cached>" after them (prompt tokens served from the prefix cache). The edge meters
 * every non-stream ending with it (a refusal before generation used nothing).
 */
export const USAGE_HEADER = "x-seventy-usage";

export interface TokenCount {
  promptTokens: number;
  completionTokens: number;
}

/** The one error type of the HTTP layer: knows its status and how to become an OpenAI error body. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly opts: {
      param?: string | null;
      code?: string | null;
      type?: string;
      headers?: Record<string, string>;
      /** What the request generated before it failed (none: it failed before generating). */
      usage?: TokenCount;
    } = {},
  ) {
    super(message);
    this.name = "HttpError";
  }

  /** A request body that failed its schema: 400 naming the first bad parameter. */
  static fromZod(error: Parameters<typeof zodErrorBody>[0]): HttpError {
    const { message, param, code } = zodErrorBody(error).error;
    return new HttpError(400, message, { param: param ?? null, code: code == null ? null : String(code) });
  }

  toResponse(extraHeaders: Record<string, string> = {}): Response {
    return new Response(JSON.stringify(errorBody(this.status, this.message, this.opts)), {
      status: this.status,
      headers: {
        "content-type": "application/json",
        [USAGE_HEADER]: `${this.opts.usage?.promptTokens ?? 0},${this.opts.usage?.completionTokens ?? 0}`,
        ...this.opts.headers,
        ...extraHeaders,
      },
    });
  }
}
