import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signRequest } from "@seventy/sdk/protocol";
import { SimulatedEngine } from "../../gpu-node/src/engine/index.js";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";

const SECRET = "test-node-secret-0123456789";
let node: RunningNode;
beforeAll(async () => {
  node = await startNode({ port: 0, secret: SECRET, engineInstance: new SimulatedEngine({ numKvBlocks: 64, blockSize: 16 }), log: () => {} });
});
afterAll(async () => node?.close());

const PATH = "/v1/chat/completions";
const BODY = JSON.stringify({ model: "tiny-llama-3.1", messages: [{ role: "user", content: "hi" }], max_tokens: 2 });

async function send(headers: Record<string, string>, body = BODY) {
  const res = await fetch(node.url + PATH, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
  return { status: res.status, body: (await res.json()) as { error?: { message: string; type: string } } };
}

describe("signed requests from the edge", () => {
  it("accepts a valid signature", async () => {
    const r = await send(await signRequest({ method: "POST", path: PATH, body: BODY, secret: SECRET }));
    expect(r.status).toBe(200);
  });

  it("rejects a missing signature", async () => {
    const r = await send({});
    expect(r.status).toBe(401);
    expect(r.body.error!.type).toBe("authentication_error");
  });

  it("rejects a signature made with another secret", async () => {
    expect((await send(await signRequest({ method: "POST", path: PATH, body: BODY, secret: "other" }))).status).toBe(401);
  });

  it("rejects a signature over another body (tampering)", async () => {
    const headers = await signRequest({ method: "POST", path: PATH, body: BODY, secret: SECRET });
    expect((await send(headers, BODY.replace('"hi"', '"bye"'))).status).toBe(401);
  });

  it("rejects a signature for another path", async () => {
    expect((await send(await signRequest({ method: "POST", path: "/v1/completions", body: BODY, secret: SECRET }))).status).toBe(401);
  });

  it("rejects a stale timestamp (> 60 s)", async () => {
    const headers = await signRequest({ method: "POST", path: PATH, body: BODY, secret: SECRET, timestamp: Math.floor(Date.now() / 1000) - 120 });
    const r = await send(headers);
    expect(r.status).toBe(401);
    expect(r.body.error!.message).toMatch(/stale/);
  });

  it("rejects a replayed signature", async () => {
    const headers = await signRequest({ method: "POST", path: PATH, body: BODY, secret: SECRET });
    expect((await send(headers)).status).toBe(200);
    const again = await send(headers);
    expect(again.status).toBe(401);
    expect(again.body.error!.message).toMatch(/replay/);
  });

  it("refuses to listen beyond loopback without a secret", async () => {
    await expect(startNode({ host: "0.0.0.0", port: 0, engineInstance: new SimulatedEngine({ numKvBlocks: 8, blockSize: 16 }), log: () => {} })).rejects.toThrow(
      /loopback/,
    );
  });
});
