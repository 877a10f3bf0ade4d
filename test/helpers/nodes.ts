import type { ChildProcess } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { stopGroup } from "../../edge/scripts/stack.mjs";

/** The sum of a Prometheus counter over all its label sets, from a /metrics text. */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n")) if (line.startsWith(name)) sum += Number(line.split(" ").pop());
  return sum;
}

/** Kills node process groups, resuming first any a test froze with SIGSTOP. */
export async function stopNodes(children: Iterable<ChildProcess>): Promise<void> {
  for (const child of children) {
    try {
      process.kill(child.pid!, "SIGCONT");
    } catch {
      // already gone
    }
    await stopGroup(child, "SIGKILL");
  }
}

/**
 * A model server (as vLLM would be, behind a gpu-node in `--engine upstream` mode) that answers
 * streams from a script chosen by the last user message, for answers with long silences:
 * - "stall": a first chunk ("Hello"), then silence until POST /v1/cancel, which ends the stream at
 *   once with its usage (1 completion token), as a seventy node does;
 * - "pause" (chat or Responses API): "Hello", silence for `pauseMs`, ", world", the end with usage
 *   (3 completion tokens).
 * Every prompt counts 9 tokens.
 */
export interface ScriptedModelServer {
  url: string;
  /** The nonces of the /v1/cancel requests received. */
  cancels: string[];
  /** Streams now silent until told to stop. */
  readonly silent: number;
  close(): Promise<void>;
}

export async function scriptedModelServer(model: string, { pauseMs = 2000 } = {}): Promise<ScriptedModelServer> {
  const cancels: string[] = [];
  const stalled = new Set<() => void>();
  const usage = (completion: number) => ({ prompt_tokens: 9, completion_tokens: completion, total_tokens: 9 + completion });
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

  const server = createServer(async (req, res) => {
    const parts: Buffer[] = [];
    for await (const p of req) parts.push(p as Buffer);
    const body = parts.length ? (JSON.parse(Buffer.concat(parts).toString()) as Record<string, unknown>) : {};
    const json = (status: number, value: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
    const open = () => res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
    const event = (value: unknown, name?: string) => res.write(`${name ? `event: ${name}\n` : ""}data: ${JSON.stringify(value)}\n\n`);

    if (req.method === "GET" && req.url === "/v1/models") return json(200, { object: "list", data: [{ id: model, object: "model", max_model_len: 4096 }] });
    if (req.method === "POST" && req.url === "/v1/cancel") {
      cancels.push(String(body.nonce));
      const stops = [...stalled];
      stalled.clear();
      for (const stop of stops) stop();
      return json(200, { cancelled: stops.length > 0 });
    }
    if (req.method === "POST" && req.url === "/v1/chat/completions") {
      const messages = body.messages as { content: string }[];
      const script = messages.at(-1)?.content;
      const id = `chatcmpl-${cancels.length}-${Date.now()}`;
      const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
        event({ id, object: "chat.completion.chunk", created: 1, model, choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] });
      const end = (completion: number) => {
        event({ id, object: "chat.completion.chunk", created: 1, model, choices: [], usage: usage(completion) });
        res.end("data: [DONE]\n\n");
      };
      open();
      chunk({ role: "assistant", content: "" });
      chunk({ content: "Hello" });
      if (script === "stall") {
        const stop = () => {
          chunk({}, "abort");
          end(1);
        };
        stalled.add(stop);
        res.on("close", () => stalled.delete(stop));
        return;
      }
      await sleep(pauseMs);
      chunk({ content: ", world" });
      chunk({}, "stop");
      return end(3);
    }
    if (req.method === "POST" && req.url === "/v1/responses") {
      let seq = 0;
      const response = { id: `resp_${Date.now()}`, object: "response", created_at: 1, model, status: "in_progress", output: [] as unknown[], usage: null as unknown };
      const send = (value: Record<string, unknown>) => event({ ...value, sequence_number: seq++ }, value.type as string);
      const delta = (text: string) => send({ type: "response.output_text.delta", item_id: "msg_1", output_index: 0, content_index: 0, delta: text, logprobs: [] });
      open();
      send({ type: "response.created", response });
      delta("Hello");
      await sleep(pauseMs);
      delta(", world");
      const done = {
        ...response,
        status: "completed",
        output: [{ id: "msg_1", type: "message", role: "assistant", status: "completed", content: [{ type: "output_text", text: "Hello, world", annotations: [] }] }],
        usage: { input_tokens: 9, output_tokens: 3, total_tokens: 12, input_tokens_details: { cached_tokens: 0 }, output_tokens_details: { reasoning_tokens: 0 } },
      };
      send({ type: "response.completed", response: done });
      return res.end();
    }
    json(404, { error: { message: `No route for ${req.method} ${req.url}.`, type: "invalid_request_error", param: null, code: "not_found" } });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    cancels,
    get silent() {
      return stalled.size;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * Stands between gpu-nodes and the edge and holds every request (their heartbeats) for `holdMs`
 * before passing it on, as a saturated edge does before it gets to one: the edge sees a heartbeat
 * that was signed `holdMs` ago. Answers go back at once. Give its `url` to nodes as their edge.
 */
export async function startHeartbeatHold(
  edgeUrl: string,
  holdMs: number,
): Promise<{ url: string; held: () => number; setHold(ms: number): void; close(): Promise<void> }> {
  let held = 0;
  const waiting = new Set<NodeJS.Timeout>();
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("data", (p: Buffer) => parts.push(p));
    req.on("end", () => {
      if (holdMs > 0) held++;
      const timer = setTimeout(() => {
        waiting.delete(timer);
        const headers = new Headers();
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string" && !HOP_HEADERS.has(k)) headers.set(k, v);
        fetch(new URL(req.url ?? "/", edgeUrl), { method: req.method, headers, body: req.method === "GET" ? undefined : Buffer.concat(parts) })
          .then(async (up) => {
            const body = Buffer.from(await up.arrayBuffer());
            res.writeHead(up.status, { "content-type": up.headers.get("content-type") ?? "application/octet-stream" });
            res.end(body);
          })
          .catch(() => {
            res.writeHead(502);
            res.end();
          });
      }, holdMs);
      waiting.add(timer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    held: () => held,
    setHold: (ms: number) => {
      holdMs = ms;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const timer of waiting) clearTimeout(timer);
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const HOP_HEADERS = new Set(["host", "connection", "content-length", "keep-alive", "transfer-encoding"]);
