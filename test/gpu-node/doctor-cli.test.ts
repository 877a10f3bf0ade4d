import { spawn, spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// The compiled CLI, as `npx seventy-node` runs it (npm test builds it first).
const CLI = fileURLToPath(new URL("../../gpu-node/dist/cli.js", import.meta.url));
const doctor = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [CLI, "doctor", ...args], { encoding: "utf8", timeout: 60_000, env: { ...process.env, SEVENTY_NODE_SECRET: "", SEVENTY_NODE_CREDENTIAL: "", ...env } });

describe("seventy-node doctor (CLI)", () => {
  it("exit code 0 when every needed check passes (reference engine: GPU lines only warn)", () => {
    const r = doctor(["--engine", "reference", "--port", "0"]);
    expect(r.stdout).toMatch(/^\[ok  \] Node.js/m);
    expect(r.stdout).toMatch(/all needed checks passed/);
    expect(r.status).toBe(0);
  });

  it("exit code 1 and a fix when a needed check fails", async () => {
    const srv = createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    try {
      const port = String((srv.address() as { port: number }).port);
      const r = doctor(["--engine", "reference", "--port", port]);
      expect(r.status).toBe(1);
      expect(r.stdout).toMatch(new RegExp(`\\[FAIL\\] port .*127.0.0.1:${port} is in use\\n\\s+fix: stop what listens there`));
    } finally {
      srv.close();
    }
  });

  it("SEVENTY_NODE_SECRET set: exit code 1 and the fix (register the node, set SEVENTY_NODE_CREDENTIAL)", () => {
    const r = doctor(["--engine", "reference", "--port", "0"], { SEVENTY_NODE_SECRET: "old-shared-secret" });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/\[FAIL\] SEVENTY_NODE_SECRET .*\n\s+fix: remove it .*POST \/admin\/nodes.*SEVENTY_NODE_CREDENTIAL/);
    expect(r.stdout).not.toContain("old-shared-secret");
  });

  it("--edge without SEVENTY_NODE_CREDENTIAL: the credential line fails with the fix", async () => {
    const { createServer: http } = await import("node:http");
    // A stand-in edge that answers /health; the credential line fails before any signed request.
    const srv = http((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ time: Date.now() })));
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    try {
      const edge = `http://127.0.0.1:${(srv.address() as { port: number }).port}`;
      // Asynchronously: the stand-in edge runs in this process.
      const child = spawn(process.execPath, [CLI, "doctor", "--engine", "reference", "--port", "0", "--edge", edge], { env: { ...process.env, SEVENTY_NODE_SECRET: "", SEVENTY_NODE_CREDENTIAL: "" } });
      let stdout = "";
      child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
      const status = await new Promise<number | null>((resolve) => child.on("close", resolve));
      const r = { status, stdout };
      expect(r.status).toBe(1);
      expect(r.stdout).toMatch(/\[FAIL\] node credential .*SEVENTY_NODE_CREDENTIAL is not set\n\s+fix: register the node with the edge/);
    } finally {
      srv.close();
    }
  });

  it("a bad flag is a usage error (exit code 2)", () => {
    const r = doctor(["--quantization", "int3"]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--quantization must be none or fp8/);
  });
});
