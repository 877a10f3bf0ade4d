import { readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/**
 * The Hugging Face environment, read the way `huggingface_hub` reads it, so a cache filled by
 * `huggingface-cli`/`hf download` is used in place and ours is usable by those tools.
 */
export interface HubEnv {
  /** `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. */
  cacheDir: string;
  /** `$HF_TOKEN`, else the token `huggingface-cli login` saved (`$HF_TOKEN_PATH`, else `$HF_HOME/token`). */
  token: string | undefined;
  /** `HF_HUB_OFFLINE=1`: resolve from the cache only. */
  offline: boolean;
  /** `$HF_ENDPOINT` (a mirror, or a local hub in tests), else https://huggingface.co. */
  endpoint: string;
}

const TRUE_VALUES = new Set(["1", "on", "yes", "true"]);

export function hubEnv(env: NodeJS.ProcessEnv = process.env): HubEnv {
  const hfHome = env.HF_HOME ?? join(env.XDG_CACHE_HOME ?? join(homedir(), ".cache"), "huggingface");
  return {
    cacheDir: env.HF_HUB_CACHE ?? env.HUGGINGFACE_HUB_CACHE ?? join(hfHome, "hub"),
    token: env.HF_TOKEN || readSavedToken(env.HF_TOKEN_PATH ?? join(hfHome, "token")),
    offline: TRUE_VALUES.has((env.HF_HUB_OFFLINE ?? "").toLowerCase()),
    endpoint: (env.HF_ENDPOINT ?? "https://huggingface.co").replace(/\/+$/, ""),
  };
}

function readSavedToken(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8").trim() || undefined;
  } catch {
    return undefined;
  }
}
