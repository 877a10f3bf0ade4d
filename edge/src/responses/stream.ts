import type { ResponseObject, Usage } from "@seventy/sdk/protocol";
import { SseScanner } from "../proxy/sse";

const decoder = new TextDecoder();
const encoder = new TextEncoder();
const SEQUENCE = /"sequence_number"\s*:\s*(\d+)/;
const TYPE = /"type"\s*:\s*"([^"]+)"/;

/** A response's usage in chat's terms, for metering. */
export function chatUsage(response: Pick<ResponseObject, "usage"> | null): Usage | null {
  const u = response?.usage;
  if (!u) return null;
  return {
    prompt_tokens: u.input_tokens,
    completion_tokens: u.output_tokens,
    total_tokens: u.total_tokens,
    prompt_tokens_details: { cached_tokens: u.input_tokens_details?.cached_tokens ?? 0 },
  };
}

/**
 * Watches a Responses API event stream as it passes through: a stream is complete at
 * `response.completed` / `response.incomplete` (there is no `[DONE]`), failed at `error` /
 * `response.failed`. It keeps the response from `response.created` (to build `response.failed` if
 * the node dies) and the final response (to store it), and reads usage from the final response.
 */
export class ResponsesScanner extends SseScanner {
  created: ResponseObject | null = null;
  final: ResponseObject | null = null;
  private nextSequence = 0;

  /** `maxEventBytes`: the largest unfinished event held back, as for chat streams. */
  constructor(maxEventBytes?: number) {
    super(false, maxEventBytes);
  }

  protected override keep(event: Uint8Array): boolean {
    const text = decoder.decode(event);
    let name = "";
    let data = "";
    for (const line of text.split(/\r?\n/)) {
      if (line.startsWith("event:")) name = line.slice(6).trim();
      else if (line.startsWith("data:")) data += line.slice(line.charCodeAt(5) === 32 ? 6 : 5);
    }
    if (!data) return true;
    const seq = SEQUENCE.exec(data);
    if (seq) this.nextSequence = Math.max(this.nextSequence, Number(seq[1]) + 1);
    const type = name || TYPE.exec(data)?.[1] || "";
    switch (type) {
      case "response.output_text.delta":
      case "response.function_call_arguments.delta":
        this.outcome.chunks++;
        return true;
      case "response.created":
        this.created = this.responseOf(data);
        return true;
      case "response.completed":
      case "response.incomplete": {
        const response = this.responseOf(data);
        this.outcome.completed = true;
        this.final = response;
        this.noteUsage(response);
        return true;
      }
      case "response.failed":
        this.outcome.errored = true;
        this.noteUsage(this.responseOf(data));
        return true;
      case "error":
        this.outcome.errored = true;
        return true;
      default:
        return true;
    }
  }

  private responseOf(data: string): ResponseObject | null {
    try {
      return (JSON.parse(data) as { response?: ResponseObject }).response ?? null;
    } catch {
      return null;
    }
  }

  private noteUsage(response: ResponseObject | null): void {
    const usage = chatUsage(response);
    if (usage) this.outcome.usage = usage;
  }

  /**
   * The end of a stream the node did not finish: an `error` event, then `response.failed` with
   * the response as it was created, numbered on from the last event passed on.
   */
  cutOffEvent(message: string, code: string): Uint8Array {
    const seq = this.nextSequence;
    let out = `event: error\ndata: ${JSON.stringify({ type: "error", code, message, param: null, sequence_number: seq })}\n\n`;
    if (this.created) {
      const response = { ...this.created, status: "failed", error: { code: "server_error", message } };
      out += `event: response.failed\ndata: ${JSON.stringify({ type: "response.failed", response, sequence_number: seq + 1 })}\n\n`;
    }
    return encoder.encode(out);
  }
}
