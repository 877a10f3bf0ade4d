/**
 * The files serving needs from a model repo: config, tokenizer, generation config, safetensors
 * weights and their index. Everything else (PyTorch .bin duplicates, `original/` consolidated
 * checkpoints, GGUF, images) is left on the Hub: for a 70B model that is often another 140 GB.
 */
const NEEDED = new Set([
  "config.json",
  "generation_config.json",
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "model.safetensors.index.json",
]);

export function isNeededFile(path: string): boolean {
  if (path.includes("/")) return false;
  return NEEDED.has(path) || path.endsWith(".safetensors");
}

/** The files without which a snapshot cannot be served. */
export const REQUIRED_FILES = ["config.json", "tokenizer.json", "tokenizer_config.json"] as const;
