// `npm run bench`: every benchmark, each printing its table with ratios against a baseline
// measured in the same run.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

const benches = ["bench-gpu-node.mjs", "bench-host-step.mjs", "bench-structured.mjs", "bench-reference-engine.mjs", "bench-sdk.mjs", "bench-edge.mjs"];
let failed = false;
for (const file of benches) {
  const path = fileURLToPath(new URL(file, import.meta.url));
  if (!existsSync(path)) continue;
  console.log(`\n=== ${file} ===`);
  const r = spawnSync(process.execPath, [path], { stdio: "inherit" });
  if (r.status !== 0) failed = true;
}
process.exit(failed ? 1 : 0);
