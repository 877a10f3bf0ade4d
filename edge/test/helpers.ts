import { NODE_ID_HEADER, parseNodeCredential, signRequest, type NodeCredential, type NodeHeartbeat } from "@seventy/sdk/protocol";
import { env, exports } from "cloudflare:workers";

export const ADMIN_TOKEN = "test-admin-token";
export const NODE_SECRET = "test-node-secret";

export function call(path: string, init: RequestInit = {}): Promise<Response> {
  return exports.default.fetch(new Request(`http://edge.test${path}`, init));
}

export function admin(path: string, init: RequestInit & { json?: unknown } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${ADMIN_TOKEN}`);
  let body = init.body;
  if (init.json !== undefined) {
    headers.set("content-type", "application/json");
    body = JSON.stringify(init.json);
  }
  return call(path, { ...init, headers, body });
}

export interface CreatedKey {
  id: string;
  key: string;
  prefix: string;
  limits: { rpm: number; tpm: number; concurrency: number };
  models: string[] | null;
}

export async function createKey(json: Record<string, unknown> = {}): Promise<CreatedKey> {
  const res = await admin("/admin/keys", { method: "POST", json: { name: "test", ...json } });
  if (res.status !== 201) throw new Error(`create key: ${res.status} ${await res.text()}`);
  return (await res.json()) as CreatedKey;
}

export function heartbeat(id: string, over: Partial<NodeHeartbeat> = {}): NodeHeartbeat {
  return {
    node_id: id,
    url: `https://${id}.node.test`,
    models: ["tiny"],
    engine: "simulated",
    capacity: { max_num_seqs: 8, kv_blocks_total: 1000, max_model_len: 4096 },
    load: { running: 0, waiting: 0, kv_usage: 0 },
    ...over,
  };
}

/** Registers a node through the admin API; returns its credential. */
export async function registerNode(id: string, url = `https://${id}.node.test`): Promise<NodeCredential> {
  const res = await admin("/admin/nodes", { method: "POST", json: { id, url } });
  if (res.status !== 201) throw new Error(`register node: ${res.status} ${await res.text()}`);
  const cred = parseNodeCredential(((await res.json()) as { credential: string }).credential);
  if (!cred) throw new Error("register node: no credential");
  return cred;
}

const credentials = new Map<string, NodeCredential>();

/** The node's credential, registering it (with the heartbeat's URL) when the edge does not know it. */
export async function credentialFor(id: string, url = `https://${id}.node.test`): Promise<NodeCredential> {
  const res = await admin("/admin/nodes", { method: "POST", json: { id, url } });
  if (res.status === 201) {
    const cred = parseNodeCredential(((await res.json()) as { credential: string }).credential)!;
    credentials.set(id, cred);
    return cred;
  }
  const known = credentials.get(id);
  if (res.status !== 409 || !known) throw new Error(`register node ${id}: ${res.status} ${await res.text()}`);
  return known;
}

/** A heartbeat signed with the node's own key (registering the node first when needed). */
export async function sendHeartbeat(
  hb: NodeHeartbeat,
  opts: { key?: string; headers?: Record<string, string> } = {},
): Promise<Response> {
  const body = JSON.stringify(hb);
  const key = opts.key ?? (opts.headers ? "" : (await credentialFor(hb.node_id, hb.url)).nodeKey);
  const sig =
    opts.headers ??
    (await signRequest({ method: "POST", path: "/internal/nodes/heartbeat", body, secret: key, signed: { [NODE_ID_HEADER]: hb.node_id } }));
  return call("/internal/nodes/heartbeat", { method: "POST", headers: { "content-type": "application/json", ...sig }, body });
}

export function chat(key: string | null, json: Record<string, unknown>, headers: Record<string, string> = {}): Promise<Response> {
  return call("/v1/chat/completions", {
    method: "POST",
    headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}), ...headers },
    body: JSON.stringify(json),
  });
}

export const CHAT = { model: "tiny", messages: [{ role: "user", content: "hello" }], max_tokens: 16 };

export function limiterState(keyHash: string) {
  return env.KEY_LIMITER.get(env.KEY_LIMITER.idFromName(keyHash)).state();
}

export async function expectOpenAIError(res: Response, status: number, code?: string): Promise<{ message: string; type: string; param: string | null; code: string | null }> {
  if (res.status !== status) throw new Error(`expected ${status}, got ${res.status}: ${await res.text()}`);
  const body = (await res.json()) as { error: { message: string; type: string; param: string | null; code: string | null } };
  if (typeof body.error?.message !== "string" || typeof body.error.type !== "string" || !("param" in body.error) || !("code" in body.error)) {
    throw new Error(`not an OpenAI error body: ${JSON.stringify(body)}`);
  }
  if (code !== undefined && body.error.code !== code) throw new Error(`expected code ${code}, got ${body.error.code}`);
  return body.error;
}

const enc = new TextEncoder();

/** An OpenAI-style SSE body for a mocked node: `n` content chunks, optional usage chunk, [DONE]. */
export function sseBody(n: number, opts: { usage?: boolean; done?: boolean } = {}): string {
  let s = "";
  for (let i = 0; i < n; i++) {
    s += `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "tiny", choices: [{ index: 0, delta: { content: `t${i}` }, finish_reason: i === n - 1 ? "length" : null }] })}\n\n`;
  }
  if (opts.usage ?? true) {
    s += `data: ${JSON.stringify({ id: "c1", object: "chat.completion.chunk", created: 1, model: "tiny", choices: [], usage: { prompt_tokens: 7, completion_tokens: n, total_tokens: 7 + n } })}\n\n`;
  }
  if (opts.done ?? true) s += "data: [DONE]\n\n";
  return s;
}

export function streamOf(pieces: (string | Uint8Array)[], opts: { errorAtEnd?: boolean } = {}): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < pieces.length) {
        const p = pieces[i++]!;
        controller.enqueue(typeof p === "string" ? enc.encode(p) : p);
      } else if (opts.errorAtEnd) {
        controller.error(new Error("connection reset"));
      } else {
        controller.close();
      }
    },
  });
}
