import { ensureTinyModel } from "../gpu-node/src/model/index.js";

/**
 * Creates the tiny model once for the whole run (in SEVENTY_CACHE_DIR, set by vitest.config.ts),
 * so test files running in parallel never race to write it.
 */
export default async function setup(): Promise<void> {
  await ensureTinyModel({ log: () => {} });
}
