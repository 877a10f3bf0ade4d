import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatNodeCredential, KEY_ID_HEADER, NODE_ID_HEADER, signRequest } from "@seventy/sdk/protocol";
import { SimulatedEngine } from "../../gpu-node/src/engine/index.js";
import { startNode, type RunningNode } from "../../gpu-node/src/node.js";
import { startUpstreamNode } from "../../gpu-node/src/upstream/index.js";

// A node with its own credential: it accepts only requests the edge signed with this node's edge
// key, for this node, after this node started; everything else is a 401, before the body is read.
// The same checks hold for a native node and for one that fronts an engine (--engine upstream).
const key = (c: string) => c.repeat(43);
const CRED = { nodeId: "node-a", edgeKey: key("e"), nodeKey: key("n") };
const OTHER = { nodeId: "node-b", edgeKey: key("f"), nodeKey: key("m") };

type Started = { url: string; close(): Promise<void> };
type StartOptions = { host?: string; credential?: string; publicUrl?: string; edgeUrl?: string };
const engine = () => new SimulatedEngine({ numKvBlocks: 64, blockSize: 16 });
/** The engine an upstream-mode node fronts: a loopback gpu-node, as vLLM runs beside it. */
let engineNode: RunningNode;
const KINDS: { kind: string; start(o: StartOptions): Promise<Started> }[] = [
  { kind: "native node", start: (o) => startNode({ port: 0, engineInstance: engine(), log: () => {}, ...o }) },
  { kind: "upstream-mode node", start: (o) => startUpstreamNode({ upstream: engineNode.url, port: 0, log: () => {}, ...o }) },
];
beforeAll(async () => {
  engineNode = await startNode({ port: 0, engineInstance: engine(), log: () => {} });
});
afterAll(async () => engineNode?.close());

describe.each(KINDS)("a $kind", ({ start }) => {
  let node: Started;
  beforeAll(async () => {
    node = await start({ credential: formatNodeCredential(CRED) });
  });
  afterAll(async () => node?.close());

  const PATH = "/v1/chat/completions";
  const BODY = JSON.stringify({ model: "tiny-llama-3.1", messages: [{ role: "user", content: "hi" }], max_tokens: 2 });
  const forNode = (id = CRED.nodeId, extra: Record<string, string> = {}) => ({ [NODE_ID_HEADER]: id, ...extra });

  async function send(headers: Record<string, string>, body = BODY, target: Started = node) {
    const res = await fetch(target.url + PATH, { method: "POST", headers: { "content-type": "application/json", ...headers }, body });
    return { status: res.status, body: (await res.json()) as { error?: { message: string; type: string } } };
  }

  const sign = (opts: Partial<Parameters<typeof signRequest>[0]> = {}) =>
    signRequest({ method: "POST", path: PATH, body: BODY, secret: CRED.edgeKey, signed: forNode(), ...opts });

  describe("signed requests from the edge", () => {
    it("accepts a valid signature", async () => {
      expect((await send(await sign())).status).toBe(200);
    });

    it("rejects a missing signature", async () => {
      const r = await send({});
      expect(r.status).toBe(401);
      expect(r.body.error!.type).toBe("authentication_error");
    });

    it("rejects a signature made with another key (another node's, or its heartbeat key)", async () => {
      expect((await send(await sign({ secret: OTHER.edgeKey }))).status).toBe(401);
      expect((await send(await sign({ secret: CRED.nodeKey }))).status).toBe(401);
    });

    it("rejects a signature over another body (tampering)", async () => {
      expect((await send(await sign(), BODY.replace('"hi"', '"bye"'))).status).toBe(401);
    });

    it("rejects a tampered signed header (the key id the edge admitted under)", async () => {
      const headers = await sign({ signed: forNode(CRED.nodeId, { [KEY_ID_HEADER]: "key_1" }) });
      expect((await send({ ...headers, [KEY_ID_HEADER]: "key_2" })).status).toBe(401);
    });

    it("rejects a signature for another path", async () => {
      expect((await send(await sign({ path: "/v1/completions" }))).status).toBe(401);
    });

    it("rejects a stale timestamp (> 60 s)", async () => {
      const r = await send(await sign({ timestamp: Math.floor(Date.now() / 1000) - 120 }));
      expect(r.status).toBe(401);
      expect(r.body.error!.message).toMatch(/stale/);
    });

    it("rejects a replayed signature", async () => {
      const headers = await sign();
      expect((await send(headers)).status).toBe(200);
      const again = await send(headers);
      expect(again.status).toBe(401);
      expect(again.body.error!.message).toMatch(/replay/);
    });

    it("rejects a signature addressed to another node, even with a key that would verify", async () => {
      const r = await send(await sign({ signed: forNode(OTHER.nodeId) }));
      expect(r.status).toBe(401);
      expect(r.body.error!.message).toMatch(/another node/);
    });

    it("rejects a request signed before the node (re)started: a capture cannot be replayed after a restart", async () => {
      const captured = await sign();
      const restarted = await start({ credential: formatNodeCredential(CRED) });
      try {
        const r = await send(captured, BODY, restarted);
        expect(r.status).toBe(401);
        expect(r.body.error!.message).toMatch(/before this node started/);
        expect((await send(await sign(), BODY, restarted)).status).toBe(200);
      } finally {
        await restarted.close();
      }
    });

    it("refuses an unsigned request before reading its body", async () => {
      const { port } = new URL(node.url);
      const status = await new Promise<string>((resolve, reject) => {
        const s = connect(Number(port), "127.0.0.1", () => {
          // Announces 1 MB, sends 10 bytes, and waits: a node that read bodies first would wait too.
          s.write(`POST ${PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n\r\n{"model":1`);
        });
        let got = "";
        s.on("data", (b) => {
          got += b.toString();
          if (got.includes("\r\n")) {
            resolve(got.split("\r\n")[0]!);
            s.destroy();
          }
        });
        s.on("error", reject);
        setTimeout(() => resolve("no answer in 3 s"), 3000);
      });
      expect(status).toBe("HTTP/1.1 401 Unauthorized");
    });

    it("refuses a signed body over the limit (the edge's, plus what it adds) with a 413", async () => {
      const big = JSON.stringify({ model: "tiny-llama-3.1", messages: [{ role: "user", content: "x".repeat(1_100_000) }] });
      const r = await send(await sign({ body: big }), big);
      expect(r.status).toBe(413);
      expect(r.body.error!.message).toMatch(/too large/);
    });
  });

  describe("starting a $kind", () => {
    it("refuses to listen beyond loopback without a credential", async () => {
      await expect(start({ host: "0.0.0.0" })).rejects.toThrow(/loopback/);
    });

    it("refuses a malformed credential without echoing it", async () => {
      const err = await start({ credential: "snc1.node-a.short.key" }).catch((e: Error) => e);
      expect((err as Error).message).toMatch(/not a node credential/);
      expect((err as Error).message).not.toContain("short");
    });

    it("refuses a public URL the edge must not fetch", async () => {
      for (const publicUrl of ["ftp://node.example", "http://user:pw@169.254.169.254/latest", "https://node.example/?x=1", "http://node.example"]) {
        await expect(start({ credential: formatNodeCredential(CRED), publicUrl }), publicUrl).rejects.toThrow(/--public-url/);
      }
    });

    it("needs --public-url to join an edge from 0.0.0.0 (it would advertise 0.0.0.0)", async () => {
      await expect(start({ host: "0.0.0.0", credential: formatNodeCredential(CRED), edgeUrl: "https://edge.example" })).rejects.toThrow(/--public-url is required/);
    });

    it("needs a credential to join an edge", async () => {
      await expect(start({ edgeUrl: "https://edge.example" })).rejects.toThrow(/--edge needs SEVENTY_NODE_CREDENTIAL/);
    });
  });
});
