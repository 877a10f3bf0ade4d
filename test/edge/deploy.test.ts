/** The worker bundles for deployment: `wrangler deploy --dry-run` (offline). */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { expect, it } from "vitest";
import { ROOT, spawnGroup, wranglerEnv } from "../../edge/scripts/stack.mjs";

it("bundles with wrangler deploy --dry-run, Durable Objects exported and no secret inlined", async () => {
  const out = await mkdtemp(join(tmpdir(), "seventy-edge-dist-"));
  try {
    const child = spawnGroup(join(ROOT, "node_modules", ".bin", "wrangler"), ["deploy", "--dry-run", "--outdir", out], { env: wranglerEnv() });
    const { code } = await child.exited;
    expect(code, child.output()).toBe(0);
    expect(child.output()).toMatch(/env\.KEY_LIMITER \(KeyLimiter\)\s+Durable Object/);
    expect(child.output()).toMatch(/env\.NODE_POOL \(NodePool\)\s+Durable Object/);
    // The dashboard's pages go up with the worker as static assets.
    expect(child.output()).toMatch(/Read \d+ files from the assets directory \S*edge\/dashboard\/dist/);
    const bundle = await readFile(join(out, "index.js"), "utf8");
    for (const name of ["KeyRegistry", "KeyLimiter", "NodePool"]) expect(bundle).toMatch(new RegExp(`export\\s*\\{[^}]*\\b${name}\\b`));
    expect(bundle).not.toMatch(/ADMIN_TOKEN\s*[:=]\s*["']/);
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}, 60_000);
