import { existsSync } from "node:fs";
import { cachedCommit, findCachedSnapshot, isRepoId } from "./cache.js";
import { downloadModel, type DownloadOptions } from "./download.js";
import { hubEnv } from "./env.js";
import { HubError } from "./errors.js";

export interface ResolvedModel {
  /** A Hugging Face model directory. */
  dir: string;
  /** Set when `--model` named a Hub repo: the name to serve it under, as vLLM does. */
  repo?: string;
}

/**
 * What `--model` names: a directory on disk, or a Hub repo id (`ORG/NAME`) served from the Hugging Face
 * cache (a snapshot fetched by `huggingface-cli`/`hf download` is used in place) and downloaded into it
 * when absent, unless `HF_HUB_OFFLINE=1`.
 */
export async function resolveModel(spec: string, opts: Omit<DownloadOptions, "repo"> = {}): Promise<ResolvedModel> {
  if (existsSync(spec) || !isRepoId(spec)) return { dir: spec };
  const env = opts.env ?? hubEnv();
  const revision = opts.revision ?? "main";
  const cached = await findCachedSnapshot(env.cacheDir, spec, revision);
  if (cached) {
    opts.log?.(`using ${spec}@${cachedCommit(env.cacheDir, spec, revision)!.slice(0, 12)} from the Hugging Face cache (${cached})`);
    return { dir: cached, repo: spec };
  }
  if (env.offline) {
    throw new HubError(
      `${spec}@${revision} is not complete in the Hugging Face cache (${env.cacheDir}) and HF_HUB_OFFLINE=1: run 'seventy-node download ${spec}' where the Hub is reachable, or unset HF_HUB_OFFLINE`,
    );
  }
  opts.log?.(`${spec} is not in the Hugging Face cache (${env.cacheDir}); downloading it`);
  const result = await downloadModel({ ...opts, repo: spec, env, revision });
  return { dir: result.dir, repo: spec };
}
