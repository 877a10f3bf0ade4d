import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// The compiled CLI, as `npx seventy-node` runs it (npm test builds it first).
const CLI = fileURLToPath(new URL("../../gpu-node/dist/cli.js", import.meta.url));
const run = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: "utf8", timeout: 60_000, env: process.env });

describe("seventy-node CLI", () => {
  it("a bad flag is one line and exit code 2", () => {
    const r = run("serve", "--bogus");
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/bogus/);
  });

  it("a bad flag value is one line and exit code 2", () => {
    const r = run("serve", "--max-num-seqs", "many");
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/max-num-seqs/);
  });

  it("serve refuses the edge's old shared secret, for every engine: one line naming the fix", () => {
    for (const engine of [["--engine", "reference"], ["--engine", "upstream", "--upstream", "http://127.0.0.1:9"]]) {
      const r = spawnSync(process.execPath, [CLI, "serve", ...engine, "--port", "0"], { encoding: "utf8", timeout: 60_000, env: { ...process.env, SEVENTY_NODE_SECRET: "shared-secret-value" } });
      expect(r.status, engine.join(" ")).toBe(2);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toMatch(/SEVENTY_NODE_SECRET is no longer used: register the node with the edge \(POST \/admin\/nodes\) and set SEVENTY_NODE_CREDENTIAL/);
      expect(r.stderr).not.toContain("shared-secret-value");
    }
  });

  it("serve --engine upstream reads SEVENTY_NODE_CREDENTIAL as a native node does: a malformed one is one line, never echoed", () => {
    const r = spawnSync(process.execPath, [CLI, "serve", "--engine", "upstream", "--upstream", "http://127.0.0.1:9", "--port", "0"], {
      encoding: "utf8",
      timeout: 60_000,
      env: { ...process.env, SEVENTY_NODE_SECRET: "", SEVENTY_NODE_CREDENTIAL: "snc1.node-a.not-a-key.value" },
    });
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/SEVENTY_NODE_CREDENTIAL is not a node credential/);
    expect(r.stderr).not.toContain("not-a-key");
  });

  it("a missing model directory is one line and exit code 2", () => {
    const r = run("serve", "--model", "/nonexistent/model", "--port", "0");
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/nonexistent/);
  });

  it("an unsupported architecture is one line naming it, exit code 2", () => {
    const dir = mkdtempSync(join(tmpdir(), "seventy-bad-model-"));
    writeFileSync(join(dir, "config.json"), JSON.stringify({ architectures: ["MistralForCausalLM"], model_type: "mistral" }));
    const r = run("serve", "--model", dir, "--port", "0");
    expect(r.status).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/MistralForCausalLM/);
  });

  it("serves the tiny model by default and streams an answer", async () => {
    const child = spawn(process.execPath, [CLI, "serve", "--port", "0"], { env: process.env, stdio: ["ignore", "pipe", "pipe"] });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let out = "";
        child.stdout.on("data", (d: Buffer) => {
          out += d.toString();
          const m = /listening on (http:\/\/\S+)/.exec(out);
          if (m) resolve(m[1]!);
        });
        child.once("exit", (code) => reject(new Error(`exited ${code}`)));
      });
      const res = await fetch(url + "/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "tiny-llama-3.1", messages: [{ role: "user", content: "hello" }], max_tokens: 4, stream: true }),
      });
      const text = await res.text();
      expect(text).toMatch(/^data: \{/);
      expect(text.trimEnd().endsWith("data: [DONE]")).toBe(true);
    } finally {
      child.kill("SIGINT");
      await new Promise((r) => child.once("exit", r));
    }
    expect(child.exitCode === 0 || child.signalCode === "SIGINT").toBe(true);
  });
});
