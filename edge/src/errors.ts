import { errorBody } from "@seventy/sdk/protocol";

export interface ApiErrorOptions {
  code?: string | null;
  param?: string | null;
  type?: string;
  headers?: Record<string, string>;
}

/**
 * The one error type of the edge: anything thrown as an `ApiError` becomes an OpenAI-shaped
 * `{ error: { message, type, param, code } }` response with its status and headers.
 */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly options: ApiErrorOptions = {},
  ) {
    super(message);
    this.name = "ApiError";
  }

  get code(): string | null {
    return this.options.code ?? null;
  }

  toResponse(extraHeaders?: Record<string, string>): Response {
    return errorResponse(this.status, this.message, this.options, extraHeaders);
  }
}

export function errorResponse(
  status: number,
  message: string,
  options: ApiErrorOptions = {},
  extraHeaders?: Record<string, string>,
): Response {
  const headers = new Headers({ "content-type": "application/json" });
  if (options.headers) for (const [k, v] of Object.entries(options.headers)) headers.set(k, v);
  if (extraHeaders) for (const [k, v] of Object.entries(extraHeaders)) headers.set(k, v);
  return new Response(JSON.stringify(errorBody(status, message, options)), { status, headers });
}

/** `param` named, `code: invalid_value`, status 400. */
export function invalidValue(param: string, detail: string): ApiError {
  return new ApiError(400, `Invalid value for '${param}': ${detail}.`, { param, code: "invalid_value" });
}

/** Retry-After in whole seconds (at least 1) plus the millisecond variant openai-node reads first. */
export function retryAfterHeaders(ms: number): Record<string, string> {
  const safe = Math.max(0, Math.ceil(ms));
  return { "retry-after": String(Math.max(1, Math.ceil(safe / 1000))), "retry-after-ms": String(safe) };
}

/** An error body built elsewhere (e.g. `zodErrorBody`) as an ApiError. */
export function apiErrorFromBody(
  status: number,
  body: { error: { message: string; type: string; param?: string | null; code?: string | number | null } },
): ApiError {
  const e = body.error;
  return new ApiError(status, e.message, {
    type: e.type,
    param: e.param ?? null,
    code: e.code === undefined || e.code === null ? null : String(e.code),
  });
}
