import { QueueFullError, SchedulerError } from "../scheduler/index.js";
import type { NodeContext } from "./context.js";
import type { Generation } from "./generation.js";
import { HttpError } from "./http-error.js";

/** Starts a generation, turning scheduler refusals into HTTP errors (queue full → 503 + Retry-After). */
export function admit(gen: Generation): void {
  try {
    gen.start();
  } catch (err) {
    if (err instanceof QueueFullError) {
      throw new HttpError(503, `The server is overloaded: ${err.message}. Retry later.`, {
        code: "queue_full",
        headers: { "retry-after": String(err.retryAfterS) },
      });
    }
    if (err instanceof SchedulerError) {
      throw new HttpError(err.status, err.message, { code: err.status === 400 ? "invalid_request" : "scheduler_error" });
    }
    throw err;
  }
}

/** Per-request latency metrics: time to first token, inter-token latency, end to end. */
export function observeRequest(ctx: NodeContext, promptTokens: number) {
  const start = performance.now();
  let last = -1;
  let generated = 0;
  let finished = false;
  return {
    onToken(_choice: number, now: number) {
      generated++;
      if (last < 0) ctx.metrics.ttft.observe((now - start) / 1000);
      else ctx.metrics.itl.observe((now - last) / 1000);
      last = now;
    },
    done(reason: string) {
      if (finished) return;
      finished = true;
      ctx.metrics.promptTokens.inc(promptTokens);
      ctx.metrics.generationTokens.inc(generated);
      ctx.metrics.requestSuccess.inc({ finished_reason: reason });
      ctx.metrics.e2e.observe((performance.now() - start) / 1000);
    },
  };
}
