import {
  APIConnectionError,
  APIError,
  APITimeoutError,
  APIUserAbortError,
  SeventyError,
  type APIErrorObject,
} from "../core/errors.js";
import { Abortable, Watchdog, sleep } from "./abort.js";
import { DEFAULT_MAX_RETRY_DELAY_MS, isRetryableStatus, retryDelayMs } from "./retry.js";

/** The `fetch` signature the SDK needs; pass your own to add a proxy, tracing, or a test double. */
export type Fetch = (input: string, init: RequestInit) => Promise<Response>;

/** Per-request options, taken as the last argument of every method. */
export interface RequestOptions {
  /** Aborts the request (and the stream it returns) when it fires. */
  signal?: AbortSignal | null;
  /**
   * Milliseconds. Non-streaming: the whole attempt, body included. Streaming: until the first
   * chunk arrives. Each retry gets a fresh one.
   */
  timeout?: number;
  /** Streaming only: the longest silence allowed between pieces of the stream, in milliseconds. */
  idleTimeout?: number;
  maxRetries?: number;
  /** The longest server-requested wait (`Retry-After`) sat out before a retry; longer ones throw at once. */
  maxRetryDelay?: number;
  headers?: Record<string, string>;
}

export interface TransportConfig {
  baseURL: string;
  fetch: Fetch;
  maxRetries: number;
  maxRetryDelay?: number;
  timeout: number;
  idleTimeout: number;
  headers: Record<string, string>;
}

export interface Call {
  method: "GET" | "POST" | "PATCH" | "PUT" | "DELETE";
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  stream?: boolean;
}

/** A successful response whose body has not been read yet, with the attempt's abort and timer state. */
export interface Opened {
  response: Response;
  abortable: Abortable;
  watchdog: Watchdog;
  idleTimeout: number;
}

export class Transport {
  constructor(readonly config: TransportConfig) {}

  url(path: string, query?: Call["query"]): string {
    let url = this.config.baseURL.replace(/\/+$/, "") + path;
    if (query) {
      const params = new URLSearchParams();
      for (const [k, v] of Object.entries(query)) if (v !== undefined) params.set(k, String(v));
      const qs = params.toString();
      if (qs) url += `?${qs}`;
    }
    return url;
  }

  /**
   * Sends a request and resolves once a 2xx response's headers are in, retrying what is
   * retryable before that point. Error statuses become the matching `APIError` subclass.
   */
  async open(call: Call, options: RequestOptions = {}): Promise<Opened> {
    const { config } = this;
    const maxRetries = options.maxRetries ?? config.maxRetries;
    const maxRetryDelay = options.maxRetryDelay ?? config.maxRetryDelay ?? DEFAULT_MAX_RETRY_DELAY_MS;
    const timeout = options.timeout ?? config.timeout;
    const idleTimeout = options.idleTimeout ?? config.idleTimeout;
    const url = this.url(call.path, call.query);
    const headers: Record<string, string> = {
      accept: call.stream ? "text/event-stream" : "application/json",
      ...config.headers,
      ...options.headers,
    };
    let body: string | undefined;
    if (call.body !== undefined) {
      body = JSON.stringify(call.body);
      headers["content-type"] = "application/json";
    }

    for (let attempt = 0; ; attempt++) {
      const abortable = new Abortable(options.signal);
      const watchdog = new Watchdog((ms, phase) => abortable.abort(new APITimeoutError(phase, ms)));
      watchdog.arm(timeout, call.stream ? "first-chunk" : "request");
      abortable.onAbort(() => watchdog.stop());
      const done = () => {
        watchdog.stop();
        abortable.release();
      };

      let response: Response;
      try {
        response = await abortable.race(
          config.fetch(url, { method: call.method, headers, body, signal: abortable.signal }),
        );
      } catch (err) {
        done();
        const error =
          abortable.reason ??
          (err instanceof SeventyError ? err : new APIConnectionError(connectionMessage(err), { cause: err }));
        if (error instanceof APIUserAbortError || attempt >= maxRetries) throw error;
        await sleep(retryDelayMs(attempt + 1, undefined)!, options.signal);
        continue;
      }

      if (response.ok) return { response, abortable, watchdog, idleTimeout };

      // The error body is small; its read shares the attempt's timer and abort.
      let text = "";
      try {
        text = await abortable.race(response.text());
      } catch {
        if (abortable.reason instanceof APIUserAbortError) {
          done();
          throw abortable.reason;
        }
      }
      done();
      const error = statusError(response, text);
      if (attempt < maxRetries && isRetryableStatus(response.status, response.headers)) {
        const delay = retryDelayMs(attempt + 1, response.headers, Math.random, maxRetryDelay);
        if (delay !== undefined) {
          await sleep(delay, options.signal);
          continue;
        }
      }
      throw error;
    }
  }

  /** A request whose JSON body is read whole, within the same timeout. */
  async json<T>(call: Call, options?: RequestOptions): Promise<T> {
    const { response, abortable, watchdog } = await this.open(call, options);
    let text: string;
    try {
      text = await abortable.race(response.text());
    } catch (err) {
      throw abortable.reason ?? new APIConnectionError(connectionMessage(err), { cause: err, headers: response.headers });
    } finally {
      watchdog.stop();
      abortable.release();
    }
    if (text === "" && response.status === 204) return undefined as T;
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new APIConnectionError(`The server answered ${response.status} with a body that is not JSON.`, {
        cause: err,
        headers: response.headers,
      });
    }
  }
}

function connectionMessage(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } } | null)?.cause;
  const detail = cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : undefined);
  return detail ? `Connection error: ${detail}` : "Connection error.";
}

function statusError(response: Response, text: string): APIError {
  let error: APIErrorObject | undefined;
  let message: string | undefined;
  try {
    const parsed = JSON.parse(text) as { error?: unknown; message?: unknown };
    if (parsed && typeof parsed.error === "object" && parsed.error !== null) error = parsed.error as APIErrorObject;
    else if (parsed && typeof parsed.error === "string") error = { message: parsed.error };
    else if (parsed && typeof parsed.message === "string") message = parsed.message;
  } catch {
    message = text ? text.slice(0, 500) : undefined;
  }
  return APIError.generate(response.status, error, message, response.headers);
}
