import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ensureTinyModel } from "../../gpu-node/src/model/index.js";
import { filesOfDir, startMockHub, type MockHub } from "../helpers/mock-hub.js";

// The compiled CLI, as `npx seventy-node` runs it (npm test builds it first).
const CLI = fileURLToPath(new URL("../../gpu-node/dist/cli.js", import.meta.url));
const REPO = "tiny-org/tiny-llama-3.1";

let hub: MockHub;
let gated: MockHub;
let home: string;
beforeAll(async () => {
  const files = filesOfDir(await ensureTinyModel());
  hub = await startMockHub({ repo: REPO, files });
  gated = await startMockHub({ repo: REPO, files, token: "hf_right" });
  home = await mkdtemp(join(tmpdir(), "seventy-hf-cli-"));
});
afterAll(async () => {
  await hub?.close();
  await gated?.close();
  await rm(home, { recursive: true, force: true });
});

function run(args: string[], env: Record<string, string>, until?: RegExp): Promise<{ code: number | null; stdout: string; stderr: string; url?: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, HF_TOKEN: "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  return new Promise((resolve) => {
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      const m = until?.exec(stdout);
      if (m) {
        child.kill("SIGKILL");
        resolve({ code: null, stdout, stderr, url: m[1] });
      }
    });
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.once("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("seventy-node with Hub repo ids", () => {
  it("download fetches into HF_HOME/hub; serve --model ORG/NAME then runs offline from it under the repo's name", async () => {
    const env = { HF_HOME: home, HF_ENDPOINT: hub.url };
    const dl = await run(["download", REPO], env);
    expect(dl.stderr).toMatch(/downloading tiny-org\/tiny-llama-3.1/);
    expect(dl.code).toBe(0);
    expect(dl.stdout).toContain(join(home, "hub", "models--tiny-org--tiny-llama-3.1", "snapshots", hub.commit));

    const served = await run(["serve", "--model", REPO, "--port", "0"], { HF_HOME: home, HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://127.0.0.1:9" }, /listening on (http:\/\/\S+)/);
    expect(served.stderr).toMatch(/from the Hugging Face cache/);
    expect(served.stdout).toMatch(/model tiny-org\/tiny-llama-3.1,/);
  });

  it("a gated repo is one line naming the repo and the fix, exit code 2", async () => {
    const r = await run(["download", REPO], { HF_HOME: join(home, "other"), HF_ENDPOINT: gated.url });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/^seventy-node: tiny-org\/tiny-llama-3.1: .*accept its license .* set HF_TOKEN/);
  });

  it("a repo id that is not cached, offline, is one line and exit code 2", async () => {
    const r = await run(["serve", "--model", "nobody/absent", "--port", "0"], { HF_HOME: join(home, "empty"), HF_HUB_OFFLINE: "1" });
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(/nobody\/absent@main is not complete in the Hugging Face cache .*seventy-node download nobody\/absent/);
  });

  it("download without a repo id is a usage error", async () => {
    const r = await run(["download"], { HF_HOME: home });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/download needs one Hub repo id/);
  });
});
