import { NODE_ID_HEADER, signRequest } from "@seventy/sdk/protocol";
import { reset } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { resetReleases } from "../src/limits/releases";
import { nodePool } from "../src/pool/node-pool";
import { poolView } from "../src/pool/view";
import { admin, call, CHAT, chat, createKey, credentialFor, expectOpenAIError, heartbeat, registerNode, sendHeartbeat } from "./helpers";

// Per-node credentials: the admin registers each node with the one URL the edge may send its
// requests to; the node's heartbeats are signed with its own key; nobody can take over its id,
// point it elsewhere, or keep using a revoked credential.

beforeEach(() => {
  vi.spyOn(globalThis, "fetch").mockImplementation(async () =>
    Response.json({ id: "c", object: "chat.completion", created: 1, model: "tiny", choices: [{ index: 0, message: { role: "assistant", content: "hi" }, logprobs: null, finish_reason: "stop" }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }),
  );
});

afterEach(async () => {
  await new Promise((r) => setTimeout(r, 50));
  vi.restoreAllMocks();
  poolView.reset();
  resetReleases();
  await reset();
});

async function nodeIds(): Promise<{ id: string; status: string }[]> {
  return ((await (await admin("/admin/nodes")).json()) as { data: { id: string; status: string }[] }).data;
}

describe("registering nodes", () => {
  it("hands out the credential once and lists the node as registered until it beats", async () => {
    const res = await admin("/admin/nodes", { method: "POST", json: { id: "gpu-1", url: "https://gpu-1.example.com/" } });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { credential: string; url: string; status: string };
    expect(body.credential).toMatch(/^snc1\.gpu-1\.[\w-]{43}\.[\w-]{43}$/);
    expect(body).toMatchObject({ url: "https://gpu-1.example.com", status: "registered" });
    const [, , edgeKey, nodeKey] = body.credential.split(".");
    expect(edgeKey).not.toBe(nodeKey);
    const list = await (await admin("/admin/nodes")).text();
    expect(list).not.toContain(edgeKey!);
    expect(list).not.toContain(nodeKey!);
  });

  it("refuses URLs the edge must not send prompts to", async () => {
    const bad = [
      "ftp://gpu.example.com",
      "http://user:pw@169.254.169.254/latest/meta-data",
      "https://user:pw@gpu.example.com",
      "https://gpu.example.com/?tenant=1",
      "https://gpu.example.com/#x",
      "http://gpu.example.com",
      // http to loopback only where the edge allows it (a local stack); the test edge does not.
      "http://127.0.0.1:8100",
      "not a url",
    ];
    for (const url of bad) {
      const err = await expectOpenAIError(await admin("/admin/nodes", { method: "POST", json: { id: "n", url } }), 400, "invalid_value");
      expect(err.param, url).toBe("url");
    }
    const id = await expectOpenAIError(await admin("/admin/nodes", { method: "POST", json: { id: "Bad_ID", url: "https://a.example" } }), 400);
    expect(id.param).toBe("id");
  });

  it("never lets a node id be taken over", async () => {
    const a = await registerNode("a");
    await expectOpenAIError(await admin("/admin/nodes", { method: "POST", json: { id: "a", url: "https://evil.example" } }), 409, "node_exists");
    // Node b's key cannot speak for a, and a's key cannot speak for b.
    await credentialFor("b");
    const body = JSON.stringify(heartbeat("a"));
    const asB = await signRequest({ method: "POST", path: "/internal/nodes/heartbeat", body, secret: (await credentialFor("b")).nodeKey, signed: { [NODE_ID_HEADER]: "a" } });
    await expectOpenAIError(await call("/internal/nodes/heartbeat", { method: "POST", headers: asB, body }), 401, "invalid_signature");
    const bodyB = JSON.stringify(heartbeat("b"));
    const claimB = await signRequest({ method: "POST", path: "/internal/nodes/heartbeat", body: bodyB, secret: a.nodeKey, signed: { [NODE_ID_HEADER]: "a" } });
    await expectOpenAIError(await call("/internal/nodes/heartbeat", { method: "POST", headers: claimB, body: bodyB }), 403, "node_mismatch");
  });

  it("refuses heartbeats of unregistered nodes and heartbeats advertising another URL", async () => {
    const body = JSON.stringify(heartbeat("ghost"));
    const headers = await signRequest({ method: "POST", path: "/internal/nodes/heartbeat", body, secret: "k".repeat(43), signed: { [NODE_ID_HEADER]: "ghost" } });
    await expectOpenAIError(await call("/internal/nodes/heartbeat", { method: "POST", headers, body }), 401, "invalid_signature");
    const cred = await registerNode("a");
    for (const url of ["https://elsewhere.example", "ftp://a.node.test", "https://a.node.test/?x=1"]) {
      const res = await sendHeartbeat(heartbeat("a", { url }), { key: cred.nodeKey });
      expect([400, 403], url).toContain(res.status);
    }
    expect((await nodeIds()).map((n) => n.status)).toEqual(["registered"]);
  });

  it("gives a node the time its heartbeat waited in a busy edge on top of NODE_TTL_MS, up to another TTL", async () => {
    const cred = await credentialFor("a");
    const body = JSON.stringify(heartbeat("a"));
    const ttl = 6000; // wrangler.toml
    const expiresIn = async (timestamp: number) => {
      const headers = await signRequest({ method: "POST", path: "/internal/nodes/heartbeat", body, secret: cred.nodeKey, timestamp, signed: { [NODE_ID_HEADER]: "a" } });
      expect((await call("/internal/nodes/heartbeat", { method: "POST", headers, body })).status).toBe(200);
      const node = (await nodePool(env).snapshot()).find((n) => n.id === "a")!;
      return node.expiresAt - node.lastSeen;
    };
    const now = Math.floor(Date.now() / 1000);
    // Signed 4 s before the edge got to it: it waited 3 to 4 s (the timestamp is in whole seconds).
    const late = await expiresIn(now - 4);
    expect(late).toBeGreaterThanOrEqual(ttl + 3000);
    expect(late).toBeLessThan(ttl + 5000);
    // A timely one: the plain TTL (less than a second of lag is not counted).
    expect(await expiresIn(Math.floor(Date.now() / 1000))).toBeLessThan(ttl + 1000);
  });

  it("refuses a heartbeat older than the last accepted one (a replay, even with a fresh nonce store)", async () => {
    const cred = await credentialFor("a");
    const body = JSON.stringify(heartbeat("a"));
    const now = Math.floor(Date.now() / 1000);
    const sign = (timestamp: number) => signRequest({ method: "POST", path: "/internal/nodes/heartbeat", body, secret: cred.nodeKey, timestamp, signed: { [NODE_ID_HEADER]: "a" } });
    const older = await sign(now - 5);
    expect((await call("/internal/nodes/heartbeat", { method: "POST", headers: await sign(now), body })).status).toBe(200);
    await expectOpenAIError(await call("/internal/nodes/heartbeat", { method: "POST", headers: older, body }), 401, "replayed_signature");
  });
});

describe("revoking and rotating", () => {
  it("revoking removes the node from routing at once and refuses its heartbeats", async () => {
    const k = await createKey({ limits: { rpm: 100 } });
    expect((await sendHeartbeat(heartbeat("a"))).status).toBe(200);
    expect((await chat(k.key, CHAT)).status).toBe(200);
    const del = await admin("/admin/nodes/a", { method: "DELETE" });
    expect(await del.json()).toEqual({ id: "a", object: "node", deleted: true });
    await expectOpenAIError(await chat(k.key, CHAT), 503, "no_healthy_node");
    expect(await nodeIds()).toEqual([]);
    const cred = await registerNode("a2");
    const body = JSON.stringify(heartbeat("a"));
    const old = await signRequest({ method: "POST", path: "/internal/nodes/heartbeat", body, secret: cred.nodeKey, signed: { [NODE_ID_HEADER]: "a" } });
    await expectOpenAIError(await call("/internal/nodes/heartbeat", { method: "POST", headers: old, body }), 401);
    await expectOpenAIError(await admin("/admin/nodes/a", { method: "DELETE" }), 404, "node_not_found");
  });

  it("rotating issues new keys; the old ones stop working at once", async () => {
    const old = await credentialFor("a");
    expect((await sendHeartbeat(heartbeat("a"), { key: old.nodeKey })).status).toBe(200);
    const rotated = (await (await admin("/admin/nodes/a/rotate", { method: "POST" })).json()) as { credential: string; status: string };
    expect(rotated.status).toBe("registered");
    const [, , edgeKey, nodeKey] = rotated.credential.split(".");
    expect(nodeKey).not.toBe(old.nodeKey);
    expect(edgeKey).not.toBe(old.edgeKey);
    await expectOpenAIError(await sendHeartbeat(heartbeat("a"), { key: old.nodeKey }), 401, "invalid_signature");
    expect((await sendHeartbeat(heartbeat("a"), { key: nodeKey })).status).toBe(200);
  });
});
