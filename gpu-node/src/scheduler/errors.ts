/**
 * Errors of the scheduler layer. Each carries the HTTP status the server answers with, so the HTTP
 * layer maps any `SchedulerError` to a response without knowing the subclasses.
 */
export class SchedulerError extends Error {
  override readonly name: string = "SchedulerError";
  /** HTTP status for this error. */
  readonly status: number;

  constructor(message: string, status = 500, options?: { cause?: unknown }) {
    super(message, options);
    this.status = status;
  }
}

/** The waiting queue holds `maxQueue` requests already: answer 503 with `Retry-After: retryAfterS`. */
export class QueueFullError extends SchedulerError {
  override readonly name = "QueueFullError";
  readonly retryAfterS: number;

  constructor(maxQueue: number, retryAfterS = 1, perKey = false) {
    super(perKey ? `this key already has ${maxQueue} requests waiting on this node` : `the admission queue is full (${maxQueue} waiting requests)`, 503);
    this.retryAfterS = retryAfterS;
  }
}

/** Prompt plus `maxTokens` can never fit in the whole KV cache. */
export class RequestTooLargeError extends SchedulerError {
  override readonly name = "RequestTooLargeError";
  constructor(message: string) {
    super(message, 400);
  }
}

/** A malformed request (empty prompt, maxTokens < 1, a request id already in use). */
export class InvalidRequestError extends SchedulerError {
  override readonly name = "InvalidRequestError";
  constructor(message: string) {
    super(message, 400);
  }
}

/** `add()` after `close()`. */
export class SchedulerClosedError extends SchedulerError {
  override readonly name = "SchedulerClosedError";
  constructor() {
    super("the scheduler is closed", 503);
  }
}

/** `engine.step` threw (the original error is `cause`) or returned a malformed result. */
export class EngineStepError extends SchedulerError {
  override readonly name = "EngineStepError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 500, options);
  }
}
