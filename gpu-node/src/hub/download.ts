import { createHash, type Hash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { mkdir, rm, stat, statfs } from "node:fs/promises";
import { once } from "node:events";
import { join } from "node:path";
import { downloadFile, HubApiError, listFiles, modelInfo } from "@huggingface/hub";
import { createProgressBar, formatBytes, type ProgressStream } from "../model/progress.js";
import { cacheEntry, commitBlob, linkPointer, repoFolder, writeRef, type CacheEntry } from "./cache.js";
import { hubEnv, type HubEnv } from "./env.js";
import { hubAccessError, HubError } from "./errors.js";
import { isNeededFile } from "./files.js";
import { withFileLock } from "./lock.js";

export interface DownloadOptions {
  /** `ORG/NAME` */
  repo: string;
  /** Branch, tag or commit (default `main`). */
  revision?: string;
  env?: HubEnv;
  /** Files fetched at once (default 8, as `hf download --max-workers`). */
  maxWorkers?: number;
  /** Where the one progress bar goes (default stderr); `null` for none. */
  progress?: ProgressStream | null;
  /** Free bytes on the cache's file system; a seam for tests (default: `statfs`). */
  freeBytes?: (dir: string) => Promise<number>;
  /** Tries per file; each resumes where the last one stopped (default 3). */
  attempts?: number;
  log?: (line: string) => void;
}

export interface DownloadResult {
  /** The snapshot directory: a Hugging Face model directory. */
  dir: string;
  commit: string;
  /** Files fetched now (others were already in the cache). */
  filesFetched: number;
  /** Bytes fetched now (resumed files count only their missing part). */
  bytesFetched: number;
}

/** One file to fetch, from the Hub's tree listing. */
export interface PlannedFile {
  path: string;
  size: number;
  /** sha256 for LFS files, git blob sha1 otherwise: the blob's name and its checksum. */
  etag: string;
  lfs: boolean;
  entry: CacheEntry;
  /** Bytes already in `.incomplete` from an earlier, interrupted run. */
  resumeFrom: number;
  /** The finished blob is already in the cache. */
  cached: boolean;
}

/**
 * Fetches the files serving needs from a Hub model repo into the Hugging Face cache, through
 * `@huggingface/hub` (the Hub's API and file resolution, xet included). Files go to `blobs/<etag>.incomplete`,
 * resume from their length after an interruption, are checked against their sha256 (LFS) or git blob
 * sha1 before they are moved into place, and are fetched `maxWorkers` at a time under one progress bar.
 * The disk is checked for room before the first byte.
 */
export async function downloadModel(opts: DownloadOptions): Promise<DownloadResult> {
  const env = opts.env ?? hubEnv();
  const { repo } = opts;
  const revision = opts.revision ?? "main";
  if (env.offline) throw new HubError(`${repo}: cannot download with HF_HUB_OFFLINE=1; unset it, or fetch the model where the Hub is reachable`);
  const creds = { hubUrl: env.endpoint, accessToken: env.token };
  const { commit, files: plan, missingBytes: missing } = await planDownload({ repo, revision, env });
  const todo = plan.filter((f) => !f.cached);
  for (const f of plan) if (f.cached) await linkPointer(f.entry);

  const folder = repoFolder(env.cacheDir, repo);
  await mkdir(join(folder, "blobs"), { recursive: true });
  const free = await (opts.freeBytes ?? freeBytesOf)(folder);
  if (free < missing) {
    throw new HubError(
      `${repo}: not enough disk space in ${env.cacheDir}: the download needs ${formatBytes(missing)} more, ${formatBytes(free)} is free; free some space or point HF_HUB_CACHE at a larger disk`,
    );
  }

  const total = todo.reduce((s, f) => s + f.size, 0);
  let done = todo.reduce((s, f) => s + f.resumeFrom, 0);
  let filesDone = 0;
  const bar =
    opts.progress === null || todo.length === 0
      ? null
      : createProgressBar({ label: `downloading ${repo}`, total, stream: opts.progress ?? process.stderr });
  const advance = (n: number) => {
    done += n;
    bar?.update(done, `${filesDone}/${todo.length} files`);
  };

  // Largest first, so the long transfers overlap the short ones.
  const queue = [...todo].sort((a, b) => b.size - a.size);
  let firstError: unknown = null;
  const worker = async () => {
    for (let f = queue.shift(); f && firstError === null; f = queue.shift()) {
      try {
        await withFileLock(`${f.entry.incompletePath}.lock`, () => fetchFile(repo, commit, f, creds, opts.attempts ?? 3, advance), {
          onWait: (owner) => opts.log?.(`${f.path}: waiting for another download of it (${owner})`),
        });
        filesDone++;
      } catch (err) {
        firstError ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(opts.maxWorkers ?? 8, todo.length)) }, worker));
  bar?.done();
  if (firstError !== null) throw firstError instanceof HubApiError ? hubAccessError(repo, revision, firstError, env.token !== undefined) : firstError;

  await writeRef(env.cacheDir, repo, revision, commit);
  const bytesFetched = todo.reduce((s, f) => s + f.size - f.resumeFrom, 0);
  return { dir: join(folder, "snapshots", commit), commit, filesFetched: todo.length, bytesFetched };
}

/** The line `seventy-node download` prints: where the snapshot is and how to serve it. */
export function formatDownloadResult(repo: string, r: DownloadResult): string {
  const fetched = r.filesFetched === 0 ? "already in the cache" : `fetched ${r.filesFetched} files (${formatBytes(r.bytesFetched)})`;
  return `${repo}@${r.commit.slice(0, 12)}: ${fetched}\n${r.dir}\nserve it with: seventy-node serve --model ${repo}`;
}

export interface DownloadPlan {
  commit: string;
  files: PlannedFile[];
  /** Bytes still to fetch (partial files count only their missing part). */
  missingBytes: number;
}

/**
 * What a download of `repo@revision` would fetch: the needed files with their checksums, which are
 * already in the cache, and how far partial ones got. Asks the Hub, fetches nothing.
 */
export async function planDownload(opts: { repo: string; revision?: string; env?: HubEnv }): Promise<DownloadPlan> {
  const env = opts.env ?? hubEnv();
  const { repo } = opts;
  const revision = opts.revision ?? "main";
  const creds = { hubUrl: env.endpoint, accessToken: env.token };
  let commit: string;
  const files: PlannedFile[] = [];
  try {
    const info = await modelInfo({ name: repo, revision, additionalFields: ["sha"], ...creds });
    if (!info.sha) throw new HubError(`${repo}: the Hub did not name the commit of '${revision}'`);
    commit = info.sha;
    for await (const f of listFiles({ repo, revision: commit, ...creds })) {
      if (f.type !== "file" || !isNeededFile(f.path)) continue;
      const etag = f.lfs?.oid ?? f.oid;
      if (!etag) throw new HubError(`${repo}: the Hub listed ${f.path} without a checksum`);
      const size = f.lfs?.size ?? f.size;
      const entry = cacheEntry(env.cacheDir, repo, commit, f.path, etag);
      files.push({ path: f.path, size, etag, lfs: f.lfs !== undefined, entry, resumeFrom: 0, cached: false });
    }
  } catch (err) {
    throw hubAccessError(repo, revision, err, env.token !== undefined);
  }
  if (!files.some((f) => f.path === "config.json") || !files.some((f) => f.path.endsWith(".safetensors"))) {
    throw new HubError(`${repo}: the repo has no config.json or no .safetensors weights at its top level; seventy serves Hugging Face safetensors checkpoints`);
  }
  // What is already here: finished blobs are only linked; partial ones resume.
  for (const f of files) {
    if ((await fileSize(f.entry.blobPath)) === f.size) {
      f.cached = true;
      continue;
    }
    const partial = await fileSize(f.entry.incompletePath);
    f.resumeFrom = partial !== null && partial <= f.size ? partial : 0;
  }
  const missingBytes = files.reduce((s, f) => s + (f.cached ? 0 : f.size - f.resumeFrom), 0);
  return { commit, files, missingBytes };
}

/**
 * Fetches one file into its `.incomplete`, resuming from its length, then verifies and commits it;
 * called under the file's lock.
 * The checksum is computed as the bytes arrive (after re-reading what an earlier run left), so a
 * 141 GB model is not read back from disk a second time.
 */
async function fetchFile(
  repo: string,
  commit: string,
  f: PlannedFile,
  creds: { hubUrl: string; accessToken: string | undefined },
  attempts: number,
  advance: (bytes: number) => void,
): Promise<void> {
  // Another process may have finished it while we waited for the lock.
  if ((await fileSize(f.entry.blobPath)) === f.size) {
    advance(f.size - f.resumeFrom);
    await linkPointer(f.entry);
    return;
  }
  // A partial file longer than the file it is for is not a prefix of it: start that one over.
  if (((await fileSize(f.entry.incompletePath)) ?? 0) > f.size) await rm(f.entry.incompletePath, { force: true });
  let hash: Hash;
  for (let attempt = 1; ; attempt++) {
    const have = Math.min((await fileSize(f.entry.incompletePath)) ?? 0, f.size);
    hash = await hashPrefix(f, have);
    try {
      if (have < f.size) {
        const blob = await downloadFile({ repo, path: f.path, revision: commit, ...creds });
        if (!blob) throw new HubError(`${repo}: ${f.path} is listed but cannot be downloaded (404)`);
        await appendStream(blob.slice(have).stream(), f, have, hash, advance);
      }
      break;
    } catch (err) {
      // Access errors and our own verdicts do not get better by retrying; a cut connection may.
      if (err instanceof HubApiError || err instanceof HubError || attempt >= attempts) throw err;
      await new Promise((r) => setTimeout(r, 250 * attempt));
    }
  }
  const digest = hash.digest("hex");
  if (digest !== f.etag) {
    await rm(f.entry.incompletePath, { force: true });
    throw new HubError(
      `${repo}: ${f.path} failed verification (${f.lfs ? "sha256" : "git sha1"} ${digest}, expected ${f.etag}); the bad file was removed, run the download again`,
    );
  }
  await commitBlob(f.entry);
}

async function appendStream(body: ReadableStream<Uint8Array>, f: PlannedFile, have: number, hash: Hash, advance: (n: number) => void): Promise<void> {
  const out = createWriteStream(f.entry.incompletePath, { flags: "a" });
  let written = have;
  try {
    for await (const chunk of body as unknown as AsyncIterable<Uint8Array>) {
      written += chunk.byteLength;
      // A server that ignored the Range header sends the whole file again: stop before it grows.
      if (written > f.size) throw new HubError(`${f.path}: the server sent more bytes than the file has (${f.size}); run the download again`);
      hash.update(chunk);
      if (!out.write(chunk)) await once(out, "drain");
      advance(chunk.byteLength);
    }
  } finally {
    out.end();
    await once(out, "close");
  }
  if (written < f.size) throw new Error(`${f.path}: the connection ended after ${written} of ${f.size} bytes`);
}

/**
 * A checksum over the first `have` bytes of the partial file: sha256 of the content for LFS files,
 * git's blob sha1 (`blob <size>\0` + content) otherwise.
 */
async function hashPrefix(f: PlannedFile, have: number): Promise<Hash> {
  const hash = createHash(f.lfs ? "sha256" : "sha1");
  if (!f.lfs) hash.update(`blob ${f.size}\0`);
  if (have > 0) for await (const chunk of createReadStream(f.entry.incompletePath, { start: 0, end: have - 1 })) hash.update(chunk as Buffer);
  return hash;
}

async function fileSize(path: string): Promise<number | null> {
  try {
    return (await stat(path)).size;
  } catch {
    return null;
  }
}

async function freeBytesOf(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}
