import { describe, expect, it } from "vitest";
import {
  APIError,
  BadRequestError,
  ConflictError,
  InternalServerError,
  NotFoundError,
  PermissionDeniedError,
  RateLimitError,
  UnprocessableEntityError,
  AuthenticationError,
  parseRateLimitHeaders,
  retryAfterMs,
} from "./errors.js";
import { isRetryableStatus, retryDelayMs } from "../internal/retry.js";

describe("APIError.generate", () => {
  it("picks one class per status", () => {
    const cases: [number, Function][] = [
      [400, BadRequestError],
      [401, AuthenticationError],
      [403, PermissionDeniedError],
      [404, NotFoundError],
      [409, ConflictError],
      [422, UnprocessableEntityError],
      [429, RateLimitError],
      [500, InternalServerError],
      [503, InternalServerError],
    ];
    for (const [status, cls] of cases) {
      const e = APIError.generate(status, { message: "m" }, undefined, new Headers());
      expect(e).toBeInstanceOf(cls);
      expect(e).toBeInstanceOf(APIError);
      expect(e.status).toBe(status);
    }
    expect(APIError.generate(418, undefined, "teapot", undefined).constructor).toBe(APIError);
    expect(APIError.generate(418, undefined, "teapot", undefined).message).toBe("418 teapot");
  });
});

describe("retry-after and rate-limit headers", () => {
  it("prefers retry-after-ms, then Retry-After seconds or date", () => {
    expect(retryAfterMs(new Headers({ "retry-after-ms": "250", "retry-after": "9" }))).toBe(250);
    expect(retryAfterMs(new Headers({ "retry-after": "2" }))).toBe(2000);
    const date = new Date(Date.now() + 5_000).toUTCString();
    const ms = retryAfterMs(new Headers({ "retry-after": date }))!;
    expect(ms).toBeGreaterThan(3_000);
    expect(ms).toBeLessThanOrEqual(5_000);
    expect(retryAfterMs(new Headers({ "retry-after": "soon" }))).toBeUndefined();
  });

  it("parses x-ratelimit-* counts and durations", () => {
    const h = new Headers({
      "x-ratelimit-limit-tokens": "100000",
      "x-ratelimit-reset-tokens": "6m0s",
      "x-ratelimit-reset-requests": "20ms",
      "x-ratelimit-limit-concurrency": "8",
      "x-ratelimit-policy": "fixed-window",
      "x-other": "1",
    });
    expect(parseRateLimitHeaders(h)).toEqual({
      limitTokens: 100000,
      resetTokens: 360,
      resetRequests: 0.02,
      limitConcurrency: 8,
      policy: "fixed-window",
    });
  });
});

describe("retry policy", () => {
  it("retries 408, 409, 429 and 5xx unless the server says otherwise", () => {
    const none = new Headers();
    expect([408, 409, 429, 500, 502, 503, 504].every((s) => isRetryableStatus(s, none))).toBe(true);
    expect([400, 401, 403, 404, 413, 422].some((s) => isRetryableStatus(s, none))).toBe(false);
    expect(isRetryableStatus(503, new Headers({ "x-should-retry": "false" }))).toBe(false);
    expect(isRetryableStatus(400, new Headers({ "x-should-retry": "true" }))).toBe(true);
  });

  it("backs off exponentially with up to 25 % jitter, capped at 8 s", () => {
    const noJitter = () => 0;
    const fullJitter = () => 1;
    expect([1, 2, 3, 4, 5, 6].map((a) => retryDelayMs(a, undefined, noJitter))).toEqual([500, 1000, 2000, 4000, 8000, 8000]);
    expect(retryDelayMs(1, undefined, fullJitter)).toBe(375);
    expect(retryDelayMs(3, new Headers({ "retry-after-ms": "42" }))).toBe(42);
    expect(retryDelayMs(1, new Headers({ "retry-after": "61" }))).toBeUndefined();
  });
});

describe("errors inside a stream", () => {
  it("take their status from status, a numeric code, or the type", async () => {
    const { inStreamError } = await import("./source.js");
    expect(inStreamError({ error: { message: "m", type: "x", status: 429 } }, undefined)).toBeInstanceOf(RateLimitError);
    expect(inStreamError({ error: { message: "m", type: "x", code: 400 } }, undefined)).toBeInstanceOf(BadRequestError);
    const cut = inStreamError({ error: { message: "node gone", type: "server_error", param: null, code: "upstream_disconnected" } }, undefined);
    expect(cut).toBeInstanceOf(InternalServerError);
    expect(cut).toMatchObject({ status: 500, code: "upstream_disconnected", message: "500 node gone" });
    const unknown = inStreamError({ error: { message: "odd", type: "weird" } }, undefined);
    expect(unknown.constructor).toBe(APIError);
    expect(unknown.status).toBeUndefined();
  });
});

describe("maxRetryDelay", () => {
  it("caps the server hint the client will wait for", () => {
    const h = new Headers({ "retry-after": "5" });
    expect(retryDelayMs(1, h, Math.random, 10_000)).toBe(5_000);
    expect(retryDelayMs(1, h, Math.random, 2_000)).toBeUndefined();
  });
});
