import { existsSync, readFileSync } from "node:fs";
import { mkdir, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { REQUIRED_FILES } from "./files.js";

/**
 * The Hugging Face cache layout (what `huggingface_hub` writes and reads):
 *
 *   $HF_HUB_CACHE/models--ORG--NAME/
 *     blobs/<etag>                        the bytes; etag = sha256 for LFS files, git blob sha1 otherwise
 *     blobs/<etag>.incomplete             a download in progress (resumed from its length)
 *     snapshots/<commit>/<path>           relative symlink to ../../blobs/<etag>
 *     refs/<revision>                     the commit a branch or tag pointed to when fetched
 */
export function repoFolder(cacheDir: string, repo: string): string {
  return join(cacheDir, `models--${repo.split("/").join("--")}`);
}

export const COMMIT_RE = /^[0-9a-f]{40}$/;

/** A Hub repo id (`ORG/NAME`), as opposed to a path on disk. */
export function isRepoId(spec: string): boolean {
  return /^[A-Za-z0-9][\w.-]{0,95}\/[A-Za-z0-9][\w.-]{0,95}$/.test(spec) && !spec.includes("..");
}

/** The commit a revision names in the cache: itself when it is a commit, else what `refs/<revision>` holds. */
export function cachedCommit(cacheDir: string, repo: string, revision: string): string | null {
  if (COMMIT_RE.test(revision)) return revision;
  try {
    const commit = readFileSync(join(repoFolder(cacheDir, repo), "refs", revision), "utf8").trim();
    return COMMIT_RE.test(commit) ? commit : null;
  } catch {
    return null;
  }
}

/**
 * The snapshot directory of `repo@revision` when every file serving needs is present (config,
 * tokenizer, and all safetensors shards the index names), else null.
 */
export async function findCachedSnapshot(cacheDir: string, repo: string, revision: string): Promise<string | null> {
  const commit = cachedCommit(cacheDir, repo, revision);
  if (!commit) return null;
  const dir = join(repoFolder(cacheDir, repo), "snapshots", commit);
  // existsSync follows the symlink: a snapshot entry whose blob is gone counts as missing.
  if (!REQUIRED_FILES.every((f) => existsSync(join(dir, f)))) return null;
  if (existsSync(join(dir, "model.safetensors"))) return dir;
  try {
    const index = JSON.parse(await readFile(join(dir, "model.safetensors.index.json"), "utf8")) as { weight_map?: Record<string, string> };
    const shards = new Set(Object.values(index.weight_map ?? {}));
    return shards.size > 0 && [...shards].every((s) => existsSync(join(dir, s))) ? dir : null;
  } catch {
    return null;
  }
}

export interface CacheEntry {
  /** blobs/<etag> */
  blobPath: string;
  /** blobs/<etag>.incomplete */
  incompletePath: string;
  /** snapshots/<commit>/<path> */
  pointerPath: string;
}

export function cacheEntry(cacheDir: string, repo: string, commit: string, path: string, etag: string): CacheEntry {
  const folder = repoFolder(cacheDir, repo);
  const blobPath = join(folder, "blobs", etag);
  return { blobPath, incompletePath: `${blobPath}.incomplete`, pointerPath: join(folder, "snapshots", commit, path) };
}

/** Moves a finished download into place and links the snapshot to it (relative, as huggingface_hub does). */
export async function commitBlob(entry: CacheEntry): Promise<void> {
  await rename(entry.incompletePath, entry.blobPath);
  await linkPointer(entry);
}

export async function linkPointer(entry: CacheEntry): Promise<void> {
  await mkdir(dirname(entry.pointerPath), { recursive: true });
  await rm(entry.pointerPath, { force: true });
  await symlink(relative(dirname(entry.pointerPath), entry.blobPath), entry.pointerPath);
}

/** Records which commit a branch or tag pointed to (huggingface_hub writes it without a newline). */
export async function writeRef(cacheDir: string, repo: string, revision: string, commit: string): Promise<void> {
  if (revision === commit) return;
  const path = join(repoFolder(cacheDir, repo), "refs", revision);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, commit);
}
