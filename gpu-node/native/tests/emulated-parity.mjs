// Tiny-model parity of the emulated CUDA engine: the real safetensors tiny model (make-device-inputs.mjs,
// which also runs the TypeScript reference engine) loaded by engine_cli_emu through the CUDA engine's
// weight path (pinned staging, row permutation, FP8 quantization on the device), prefill and one decode
// step, against the TypeScript reference's tokens and logits. Needs `npm run build` (gpu-node/dist).
//
//   node gpu-node/native/tests/emulated-parity.mjs <engine_cli_emu> <workDir>
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { logitsErr, readNumberLines, runEngineCli } from "../../bench/engine-cli-reference.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const [cli, work] = process.argv.slice(2).map((p) => resolve(p));
const inputs = join(work, "device-inputs");
execFileSync(process.execPath, [join(here, "..", "..", "bench", "make-device-inputs.mjs"), inputs], { stdio: ["ignore", "ignore", "inherit"] });

const STEPS = 2; // prefill + one decode step: the reference keeps the logits of steps 0 and 1
const expected = readNumberLines(join(inputs, "expected_tokens.txt"));
const logitSteps = readNumberLines(join(inputs, "steps.txt"))[1];
const nseq = expected.length;
const refAll = new Float32Array(readFileSync(join(inputs, "expected_logits.f32")).buffer.slice(0));
const vocab = refAll.length / (logitSteps.length * nseq);

let ok = true;
for (const [name, quant, tol] of [["cuda bf16", "none", 5e-2], ["cuda fp8", "fp8", 8e-2]]) {
  const tokFile = join(work, `parity-${quant}.txt`), logitFile = join(work, `parity-${quant}.f32`);
  const t0 = Date.now();
  runEngineCli(cli, join(inputs, "manifest.txt"), join(inputs, "prompts.txt"), STEPS, ["--quant", quant, "--tokens", tokFile, "--logits", logitFile]);
  const got = readNumberLines(tokFile);
  const lg = new Float32Array(readFileSync(logitFile).buffer.slice(0));
  let worst = 0;
  for (let step = 0; step < STEPS; step++) {
    const r = logitSteps.indexOf(step);
    for (let s = 0; s < nseq; s++) {
      const at = (i) => (i * nseq + s) * vocab;
      worst = Math.max(worst, logitsErr(lg.subarray(at(step), at(step) + vocab), refAll.subarray(at(r), at(r) + vocab)));
    }
  }
  const sameTokens = got.every((g, s) => g.length === STEPS && g.every((t, i) => t === expected[s][i]));
  const pass = sameTokens && worst < tol;
  ok &&= pass;
  console.log(`${pass ? "PASS" : "FAIL"} tiny model (safetensors), emulated ${name} vs TypeScript reference, ${STEPS} steps: ` +
    `tokens ${sameTokens ? "same" : "DIFFER"}, logits max err ${worst.toExponential(2)} (< ${tol}), ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}

// The runs above keep the embedding table in host memory (the default): the same bf16 rows read from
// the device copy must give bit-identical logits.
{
  const t0 = Date.now();
  const logitFile = join(work, "parity-none-gpu-embedding.f32");
  runEngineCli(cli, join(inputs, "manifest.txt"), join(inputs, "prompts.txt"), STEPS, ["--embedding-device", "gpu", "--logits", logitFile]);
  const host = readFileSync(join(work, "parity-none.f32")), gpu = readFileSync(logitFile);
  const pass = host.length > 0 && host.equals(gpu);
  ok &&= pass;
  console.log(`${pass ? "PASS" : "FAIL"} tiny model (safetensors), emulated cuda bf16: embedding in host memory vs on the device, ${STEPS} steps: ` +
    `logits ${pass ? "bit-identical" : "DIFFER"}, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
process.exit(ok ? 0 : 1);
