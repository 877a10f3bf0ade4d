/**
 * The request id header (the protocol's HEADER_REQUEST_ID). Repeated here rather than imported:
 * the protocol modules build zod schemas when loaded, and the client must not pull zod into bundles.
 */
export const REQUEST_ID_HEADER = "x-request-id";

/** Base class of every error the SDK throws. */
export class SeventyError extends Error {
  override name = "SeventyError";
}

/** The `error` object of an OpenAI-style error body. */
export interface APIErrorObject {
  message?: string;
  type?: string;
  param?: string | null;
  code?: string | number | null;
  [key: string]: unknown;
}

/**
 * An error the API answered with: an HTTP error status, or an error event inside a 200 stream
 * (then `status` is taken from the event's numeric `code` when it has one).
 */
export class APIError<TStatus extends number | undefined = number | undefined> extends SeventyError {
  override name = "APIError";
  /** HTTP status, or the numeric code of an in-stream error event; undefined when there is none. */
  readonly status: TStatus;
  readonly headers: Headers | undefined;
  /** The `error` object of the body, as sent. */
  readonly error: APIErrorObject | undefined;
  readonly code: string | number | null | undefined;
  readonly type: string | undefined;
  readonly param: string | null | undefined;
  /** The `x-request-id` the edge gave the request: quote it when reporting a problem. */
  readonly requestId: string | undefined;

  constructor(status: TStatus, error: APIErrorObject | undefined, message: string | undefined, headers: Headers | undefined) {
    super(APIError.makeMessage(status, error, message));
    this.status = status;
    this.headers = headers;
    this.error = error;
    this.code = error?.code;
    this.type = error?.type;
    this.param = error?.param;
    this.requestId = headers?.get(REQUEST_ID_HEADER) ?? undefined;
  }

  private static makeMessage(status: number | undefined, error: APIErrorObject | undefined, message: string | undefined): string {
    const msg = error?.message ? error.message : message;
    if (status && msg) return `${status} ${msg}`;
    if (status) return `${status} status code (no body)`;
    return msg ?? "(no status code or body)";
  }

  /** Picks the subclass for a status. */
  static generate(
    status: number | undefined,
    error: APIErrorObject | undefined,
    message: string | undefined,
    headers: Headers | undefined,
  ): APIError {
    if (status === undefined) return new APIError(undefined, error, message, headers);
    switch (status) {
      case 400:
        return new BadRequestError(status, error, message, headers);
      case 401:
        return new AuthenticationError(status, error, message, headers);
      case 403:
        return new PermissionDeniedError(status, error, message, headers);
      case 404:
        return new NotFoundError(status, error, message, headers);
      case 409:
        return new ConflictError(status, error, message, headers);
      case 422:
        return new UnprocessableEntityError(status, error, message, headers);
      case 429:
        return new RateLimitError(status, error, message, headers);
      default:
        return status >= 500
          ? new InternalServerError(status, error, message, headers)
          : new APIError(status, error, message, headers);
    }
  }
}

export class BadRequestError extends APIError<400> {
  override name = "BadRequestError";
}
export class AuthenticationError extends APIError<401> {
  override name = "AuthenticationError";
}
export class PermissionDeniedError extends APIError<403> {
  override name = "PermissionDeniedError";
}
export class NotFoundError extends APIError<404> {
  override name = "NotFoundError";
}
export class ConflictError extends APIError<409> {
  override name = "ConflictError";
}
export class UnprocessableEntityError extends APIError<422> {
  override name = "UnprocessableEntityError";
}
export class InternalServerError extends APIError<number> {
  override name = "InternalServerError";
}

/**
 * The `x-ratelimit-*` headers, parsed: `x-ratelimit-remaining-tokens: 9000` becomes
 * `remainingTokens: 9000`, and durations such as `x-ratelimit-reset-requests: 6m0s` become seconds.
 */
export interface RateLimitInfo {
  limitRequests?: number;
  remainingRequests?: number;
  resetRequests?: number;
  limitTokens?: number;
  remainingTokens?: number;
  resetTokens?: number;
  [key: string]: number | string | undefined;
}

export class RateLimitError extends APIError<429> {
  override name = "RateLimitError";
  /** Seconds the server asked the caller to wait (`retry-after-ms` or `Retry-After`), if it said. */
  readonly retryAfter: number | undefined;
  readonly rateLimit: RateLimitInfo;

  constructor(status: 429, error: APIErrorObject | undefined, message: string | undefined, headers: Headers | undefined) {
    super(status, error, message, headers);
    const ms = retryAfterMs(headers);
    this.retryAfter = ms === undefined ? undefined : ms / 1000;
    this.rateLimit = parseRateLimitHeaders(headers);
  }
}

/** The request never got an answer: DNS, refused or reset connection, or a stream cut short. */
export class APIConnectionError extends APIError<undefined> {
  override name = "APIConnectionError";
  constructor(message = "Connection error.", options?: { cause?: unknown; headers?: Headers }) {
    super(undefined, undefined, message, options?.headers);
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** Which limit ran out: the whole request, the wait for a stream's first chunk, or a silence inside it. */
export type TimeoutPhase = "request" | "first-chunk" | "idle";

export class APITimeoutError extends APIConnectionError {
  override name = "APITimeoutError";
  readonly phase: TimeoutPhase;
  readonly timeoutMs: number;
  constructor(phase: TimeoutPhase, timeoutMs: number, headers?: Headers) {
    super(timeoutMessage(phase, timeoutMs), { headers });
    this.phase = phase;
    this.timeoutMs = timeoutMs;
  }
}

function timeoutMessage(phase: TimeoutPhase, ms: number): string {
  switch (phase) {
    case "request":
      return `Request timed out after ${ms} ms.`;
    case "first-chunk":
      return `No stream chunk arrived within ${ms} ms.`;
    case "idle":
      return `The stream stalled: no data for ${ms} ms.`;
  }
}

/** The caller aborted: its signal fired, it called `stream.abort()`, or it left a `for await` loop early. */
export class APIUserAbortError extends APIError<undefined> {
  override name = "APIUserAbortError";
  constructor(message = "Request was aborted.") {
    super(undefined, undefined, message, undefined);
  }
}

/** A response did not match what was asked for: invalid JSON, a failed schema, or a truncated answer. */
export class ResponseValidationError extends SeventyError {
  override name = "ResponseValidationError";
  constructor(
    message: string,
    /** The raw text that failed. */
    readonly raw: string | undefined,
    /** Schema issues, when a schema rejected the value. */
    readonly issues: readonly { message: string; path?: readonly unknown[] }[] = [],
  ) {
    super(message);
  }
}

/** Milliseconds from `retry-after-ms`, else `Retry-After` (seconds or an HTTP date). */
export function retryAfterMs(headers: Headers | undefined): number | undefined {
  if (!headers) return undefined;
  const ms = headers.get("retry-after-ms");
  if (ms !== null) {
    const n = Number.parseFloat(ms);
    if (Number.isFinite(n) && n >= 0) return n;
  }
  const ra = headers.get("retry-after");
  if (ra !== null) {
    const s = Number(ra);
    if (ra.trim() !== "" && Number.isFinite(s)) return s >= 0 ? s * 1000 : undefined;
    const date = Date.parse(ra);
    if (!Number.isNaN(date)) return Math.max(0, date - Date.now());
  }
  return undefined;
}

const PREFIX = "x-ratelimit-";

export function parseRateLimitHeaders(headers: Headers | undefined): RateLimitInfo {
  const out: RateLimitInfo = {};
  if (!headers) return out;
  headers.forEach((value, name) => {
    if (!name.startsWith(PREFIX)) return;
    const key = name.slice(PREFIX.length).replace(/-([a-z0-9])/g, (_, c: string) => c.toUpperCase());
    out[key] = parseRateLimitValue(value);
  });
  return out;
}

/** "42" → 42; "1s", "6m0s", "250ms", "1h2m3.5s" → seconds; anything else stays a string. */
function parseRateLimitValue(value: string): number | string {
  const v = value.trim();
  if (v !== "" && Number.isFinite(Number(v))) return Number(v);
  const re = /(\d+(?:\.\d+)?)(ms|h|m|s)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(v); m; m = re.exec(v)) {
    const n = Number(m[1]);
    total += m[2] === "h" ? n * 3600 : m[2] === "m" ? n * 60 : m[2] === "s" ? n : n / 1000;
    matched = re.lastIndex;
  }
  return matched === v.length && matched > 0 ? total : value;
}
