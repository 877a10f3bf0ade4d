import { lstat, mkdir, mkdtemp, readFile, readlink, rm, stat, symlink, writeFile } from "node:fs/promises";
import { hostname, tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { scanCachedRepo } from "@huggingface/hub";
import { downloadModel, findCachedSnapshot, hubEnv, HubError, isNeededFile, repoFolder, resolveModel, type HubEnv } from "../../gpu-node/src/hub/index.js";
import { ensureTinyModel, openModelDir } from "../../gpu-node/src/model/index.js";
import { filesOfDir, gitOid, isLfs, sha256, startMockHub, type MockHub } from "../helpers/mock-hub.js";

const REPO = "tiny-org/tiny-llama-3.1";
let files: Map<string, Buffer>;
let hub: MockHub | undefined;
const dirs: string[] = [];

beforeAll(async () => {
  files = filesOfDir(await ensureTinyModel());
});
afterEach(async () => {
  await hub?.close();
  hub = undefined;
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function tempCache(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), "seventy-hf-"));
  dirs.push(d);
  return join(d, "hub");
}
function env(cacheDir: string, over: Partial<HubEnv> = {}): HubEnv {
  return { cacheDir, token: undefined, offline: false, endpoint: hub?.url ?? "http://127.0.0.1:9", ...over };
}
/** The tiny model's directory also holds a marker file that serving does not need. */
const needed = () => [...files].filter(([name]) => isNeededFile(name));
const weights = () => [...files.keys()].find((f) => f.endsWith(".safetensors"))!;

describe("the Hugging Face environment", () => {
  it("reads HF_HUB_CACHE, HF_HOME, HF_TOKEN, the saved token, HF_HUB_OFFLINE and HF_ENDPOINT as huggingface_hub does", async () => {
    const home = await mkdtemp(join(tmpdir(), "seventy-hfhome-"));
    dirs.push(home);
    await writeFile(join(home, "token"), "hf_saved\n");
    expect(hubEnv({ HF_HOME: home })).toEqual({ cacheDir: join(home, "hub"), token: "hf_saved", offline: false, endpoint: "https://huggingface.co" });
    expect(hubEnv({ HF_HOME: home, HF_HUB_CACHE: "/x", HF_TOKEN: "hf_env", HF_HUB_OFFLINE: "1", HF_ENDPOINT: "http://m/" })).toEqual({
      cacheDir: "/x",
      token: "hf_env",
      offline: true,
      endpoint: "http://m",
    });
    expect(hubEnv({ XDG_CACHE_HOME: "/c" }).cacheDir).toBe("/c/huggingface/hub");
  });
});

describe("a repo id from a cache that huggingface-cli filled", () => {
  /** Lays out the cache exactly as huggingface_hub writes it. */
  async function populate(cacheDir: string, commit: string) {
    const folder = repoFolder(cacheDir, REPO);
    await mkdir(join(folder, "blobs"), { recursive: true });
    await mkdir(join(folder, "snapshots", commit), { recursive: true });
    await mkdir(join(folder, "refs"), { recursive: true });
    for (const [name, content] of files) {
      const etag = isLfs(name) ? sha256(content) : gitOid(content);
      await writeFile(join(folder, "blobs", etag), content);
      await symlink(join("..", "..", "blobs", etag), join(folder, "snapshots", commit, name));
    }
    await writeFile(join(folder, "refs", "main"), commit);
  }

  it("resolves offline, with no network, and the snapshot opens as a model directory", async () => {
    const cacheDir = await tempCache();
    const commit = "a".repeat(40);
    await populate(cacheDir, commit);
    const lines: string[] = [];
    const resolved = await resolveModel(REPO, { env: env(cacheDir, { offline: true, endpoint: "http://127.0.0.1:9" }), log: (l) => lines.push(l) });
    expect(resolved).toEqual({ dir: join(repoFolder(cacheDir, REPO), "snapshots", commit), repo: REPO });
    expect(lines.join("\n")).toMatch(/from the Hugging Face cache/);
    const model = await openModelDir(resolved.dir);
    expect(model.config.vocabSize).toBe(128256);
    // A commit id resolves too; an unknown revision does not.
    expect(await findCachedSnapshot(cacheDir, REPO, commit)).toBe(resolved.dir);
    expect(await findCachedSnapshot(cacheDir, REPO, "v2")).toBeNull();
  });

  it("an incomplete snapshot offline is one line saying what to run", async () => {
    const cacheDir = await tempCache();
    await populate(cacheDir, "b".repeat(40));
    await rm(join(repoFolder(cacheDir, REPO), "blobs", sha256(files.get(weights())!)));
    const err = await resolveModel(REPO, { env: env(cacheDir, { offline: true }) }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as Error).message).toMatch(/^tiny-org\/tiny-llama-3.1@main is not complete .* HF_HUB_OFFLINE=1: run 'seventy-node download tiny-org\/tiny-llama-3.1'/);
    expect((err as Error).message).not.toContain("\n");
  });

  it("a path that exists is a directory, not a repo id", async () => {
    const dir = await ensureTinyModel();
    expect(await resolveModel(dir)).toEqual({ dir });
  });
});

describe("downloading from the Hub", () => {
  it("fetches only the needed files into the HF cache layout, verified, usable by other HF cache readers", async () => {
    hub = await startMockHub({ repo: REPO, files });
    const cacheDir = await tempCache();
    const out: string[] = [];
    const result = await downloadModel({ repo: REPO, env: env(cacheDir), progress: { write: (s: string) => out.push(s) } });
    const folder = repoFolder(cacheDir, REPO);
    expect(result.dir).toBe(join(folder, "snapshots", hub.commit));
    expect(result.filesFetched).toBe(needed().length);
    expect(needed().length).toBe(files.size - 1);
    expect(await readFile(join(folder, "refs", "main"), "utf8")).toBe(hub.commit);
    for (const [name, content] of needed()) {
      const link = join(result.dir, name);
      expect((await lstat(link)).isSymbolicLink()).toBe(true);
      expect(await readlink(link)).toBe(join("..", "..", "blobs", isLfs(name) ? sha256(content) : gitOid(content)));
      expect((await readFile(link)).equals(content)).toBe(true);
    }
    // README.md and pytorch_model.bin are in the repo but not fetched.
    const fetched = hub.requests.filter((r) => r.path.includes("/resolve/")).map((r) => r.path.split("/").pop());
    expect(fetched).not.toContain("README.md");
    expect(fetched).not.toContain("pytorch_model.bin");
    expect(fetched).not.toContain(".seventy-tiny-model.json");
    // One progress bar that ends with the total.
    expect(out.join("")).toMatch(/downloading tiny-org\/tiny-llama-3.1 .* in /);
    // @huggingface/hub's cache scanner reads what we wrote.
    const scanned = await scanCachedRepo(folder);
    expect(scanned.revisions[0]!.commitOid).toBe(hub.commit);
    expect(scanned.revisions[0]!.refs).toEqual(["main"]);
    expect(scanned.filesCount).toBe(needed().length);
    // The next resolve is served from the cache with the hub gone.
    await hub.close();
    hub = undefined;
    expect((await resolveModel(REPO, { env: env(cacheDir) })).dir).toBe(result.dir);
    // And a second download fetches nothing.
    hub = await startMockHub({ repo: REPO, files });
    expect((await downloadModel({ repo: REPO, env: env(cacheDir), progress: null })).filesFetched).toBe(0);
  });

  it("a repo id that is not cached is downloaded by resolveModel (what serve --model ORG/NAME does)", async () => {
    hub = await startMockHub({ repo: REPO, files });
    const cacheDir = await tempCache();
    const lines: string[] = [];
    const resolved = await resolveModel(REPO, { env: env(cacheDir), progress: null, log: (l) => lines.push(l) });
    expect(resolved).toEqual({ dir: join(repoFolder(cacheDir, REPO), "snapshots", hub.commit), repo: REPO });
    expect(lines.join("\n")).toMatch(/is not in the Hugging Face cache .*; downloading it/);
    expect((await openModelDir(resolved.dir)).config.vocabSize).toBe(128256);
  });

  it("an interrupted download resumes where it stopped, and the result verifies", async () => {
    const big = weights();
    const cut = Math.floor(files.get(big)!.length / 3);
    hub = await startMockHub({ repo: REPO, files, cutAfter: { path: big, bytes: cut } });
    const cacheDir = await tempCache();
    const err = await downloadModel({ repo: REPO, env: env(cacheDir), progress: null, attempts: 1 }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    const incomplete = join(repoFolder(cacheDir, REPO), "blobs", `${sha256(files.get(big)!)}.incomplete`);
    expect((await stat(incomplete)).size).toBe(cut);

    const before = hub.requests.length;
    const result = await downloadModel({ repo: REPO, env: env(cacheDir), progress: null });
    // Only what the first run left: never the part of the weights it already had.
    expect(result.bytesFetched).toBeLessThanOrEqual(needed().reduce((s, [, b]) => s + b.length, 0) - cut);
    // Every transfer of the weights in the second run asked for the rest only (a request on a pooled
    // connection the cut left dead is retried, so there may be more than one).
    const fetches = hub.requests.slice(before).filter((r) => r.path.endsWith(big) && r.range !== "bytes=0-0");
    expect(fetches.length).toBeGreaterThan(0);
    expect(new Set(fetches.map((r) => r.range))).toEqual(new Set([`bytes=${cut}-${files.get(big)!.length - 1}`]));
    expect((await readFile(join(result.dir, big))).equals(files.get(big)!)).toBe(true);
    await expect(stat(incomplete)).rejects.toThrow();
  });

  it("a partial file longer than its file is started over, not appended to", async () => {
    hub = await startMockHub({ repo: REPO, files });
    const cacheDir = await tempCache();
    const config = files.get("config.json")!;
    const blobs = join(repoFolder(cacheDir, REPO), "blobs");
    await mkdir(blobs, { recursive: true });
    await writeFile(join(blobs, `${gitOid(config)}.incomplete`), Buffer.alloc(config.length + 10, 0x41));
    const result = await downloadModel({ repo: REPO, env: env(cacheDir), progress: null });
    expect((await readFile(join(result.dir, "config.json"))).equals(config)).toBe(true);
  });

  it("a cut connection is retried within the same run from where it stopped", async () => {
    const big = weights();
    hub = await startMockHub({ repo: REPO, files, cutAfter: { path: big, bytes: 1000 } });
    const result = await downloadModel({ repo: REPO, env: env(await tempCache()), progress: null });
    expect((await readFile(join(result.dir, big))).equals(files.get(big)!)).toBe(true);
    expect(hub.requests.some((r) => r.path.endsWith(big) && r.range?.startsWith("bytes=1000-"))).toBe(true);
  });

  it("two downloads of one repo at once fetch each file once, and both succeed", async () => {
    hub = await startMockHub({ repo: REPO, files });
    const cacheDir = await tempCache();
    const [a, b] = await Promise.all([
      downloadModel({ repo: REPO, env: env(cacheDir), progress: null }),
      downloadModel({ repo: REPO, env: env(cacheDir), progress: null }),
    ]);
    expect(a.dir).toBe(b.dir);
    for (const [name, content] of needed()) {
      expect((await readFile(join(a.dir, name))).equals(content)).toBe(true);
      const transfers = hub.requests.filter((r) => r.path.endsWith(`/${name}`) && r.path.includes("/resolve/") && r.range !== "bytes=0-0");
      expect(transfers).toHaveLength(1);
    }
  });

  it("a lock left by a process that died is taken over", async () => {
    hub = await startMockHub({ repo: REPO, files });
    const cacheDir = await tempCache();
    const big = weights();
    const blobs = join(repoFolder(cacheDir, REPO), "blobs");
    await mkdir(blobs, { recursive: true });
    // A pid that cannot be running (above Linux's pid_max).
    await writeFile(join(blobs, `${sha256(files.get(big)!)}.incomplete.lock`), `${hostname()} 99999999`);
    const result = await downloadModel({ repo: REPO, env: env(cacheDir), progress: null });
    expect((await readFile(join(result.dir, big))).equals(files.get(big)!)).toBe(true);
  });

  it("a corrupted file fails verification, is removed, and nothing points at it", async () => {
    const big = weights();
    hub = await startMockHub({ repo: REPO, files, corrupt: big });
    const cacheDir = await tempCache();
    const err = await downloadModel({ repo: REPO, env: env(cacheDir), progress: null }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as Error).message).toMatch(new RegExp(`${big} failed verification \\(sha256 [0-9a-f]{64}, expected ${sha256(files.get(big)!)}\\)`));
    const blob = join(repoFolder(cacheDir, REPO), "blobs", sha256(files.get(big)!));
    await expect(stat(blob)).rejects.toThrow();
    await expect(stat(`${blob}.incomplete`)).rejects.toThrow();
    expect(await findCachedSnapshot(cacheDir, REPO, "main")).toBeNull();
  });

  it("a corrupted small (non-LFS) file fails its git sha1 check", async () => {
    hub = await startMockHub({ repo: REPO, files, corrupt: "config.json" });
    const err = await downloadModel({ repo: REPO, env: env(await tempCache()), progress: null }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/config.json failed verification \(git sha1/);
  });

  it("a gated repo without a token is one line naming the repo and the fix (401)", async () => {
    hub = await startMockHub({ repo: REPO, files, token: "hf_right" });
    const err = await downloadModel({ repo: REPO, env: env(await tempCache()), progress: null }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as Error).message).toMatch(/^tiny-org\/tiny-llama-3.1: .*\(401\).*accept its license at https:\/\/huggingface.co\/tiny-org\/tiny-llama-3.1 and set HF_TOKEN/);
    expect((err as Error).message).not.toContain("\n");
  });

  it("a token without access to the gated repo is one line (403); the right token downloads", async () => {
    hub = await startMockHub({ repo: REPO, files, token: "hf_right" });
    const cacheDir = await tempCache();
    const err = await downloadModel({ repo: REPO, env: env(cacheDir, { token: "hf_wrong" }), progress: null }).catch((e: Error) => e);
    expect(err).toBeInstanceOf(HubError);
    expect((err as Error).message).toMatch(/^tiny-org\/tiny-llama-3.1: access is restricted \(403\): accept the model's license/);
    const ok = await downloadModel({ repo: REPO, env: env(cacheDir, { token: "hf_right" }), progress: null });
    expect(ok.filesFetched).toBe(needed().length);
  });

  it("checks free disk space before the first byte", async () => {
    hub = await startMockHub({ repo: REPO, files });
    const err = await downloadModel({ repo: REPO, env: env(await tempCache()), progress: null, freeBytes: async () => 1000 }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/not enough disk space .* needs [\d.]+ MiB more, 1000 B is free; free some space or point HF_HUB_CACHE at a larger disk/);
    expect(hub.requests.some((r) => r.path.includes("/resolve/"))).toBe(false);
  });

  it("HF_HUB_OFFLINE refuses to download", async () => {
    const err = await downloadModel({ repo: REPO, env: env(await tempCache(), { offline: true }), progress: null }).catch((e: Error) => e);
    expect((err as Error).message).toMatch(/HF_HUB_OFFLINE=1/);
  });
});
