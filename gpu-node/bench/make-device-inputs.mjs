// Prepares, on a machine with Node, what the GPU device check needs and cannot make there (it may
// have no Node): a tiny model directory, its manifest for engine_cli, prompts, and the TypeScript
// reference engine's greedy tokens and logits for them.
//
//   npm run build && node gpu-node/bench/make-device-inputs.mjs [outDir]
//
// outDir defaults to gpu-node/native/build/device-inputs (ignored by git; carry it to the GPU machine).
import { mkdir, rm, writeFile } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { PROMPTS, REFERENCE_KV, runReferenceSchedule, writeManifest, writePrompts } from "./engine-cli-reference.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const dist = resolve(here, "..", "dist");
const { makeTinyModel, listTensors, loadTensorsF32, readLlamaConfig } = await import(join(dist, "model", "index.js"));
const { ReferenceEngine } = await import(join(dist, "engine", "index.js"));

const out = resolve(process.argv[2] ?? join(here, "..", "native", "build", "device-inputs"));
const STEPS = 16;
/** Steps whose full logits are kept (the carried tree is size-limited): first, second, middle, last. */
const LOGIT_STEPS = [0, 1, 8, 15];
await mkdir(out, { recursive: true });
const dir = await makeTinyModel({ outDir: join(out, "tiny"), seed: 11, overwrite: true });
// The device loads weights only: drop the tokenizer (9 MB) from what travels.
await rm(join(dir, "tokenizer.json"), { force: true });
await rm(join(dir, "tokenizer_config.json"), { force: true });
const config = await readLlamaConfig(join(dir, "config.json"));
const tensors = await listTensors(dir);

writeManifest(join(out, "manifest.txt"), out, config, tensors);
writePrompts(join(out, "prompts.txt"));

const engine = new ReferenceEngine(config, await loadTensorsF32(tensors), REFERENCE_KV);
const { gen, logits } = await runReferenceSchedule(engine, PROMPTS, STEPS, (step) => LOGIT_STEPS.includes(step));
const buf = Buffer.alloc(logits.length * config.vocabSize * 4);
logits.forEach((l, i) => Buffer.from(l.buffer, l.byteOffset, l.byteLength).copy(buf, i * config.vocabSize * 4));
await writeFile(join(out, "expected_logits.f32"), buf);
await writeFile(join(out, "expected_tokens.txt"), gen.map((g) => g.join(" ")).join("\n") + "\n");
await writeFile(join(out, "steps.txt"), `${STEPS}\n${LOGIT_STEPS.join(" ")}\n`);
console.log(`device inputs in ${out}: tiny model, manifest, ${PROMPTS.length} prompts, ${STEPS} reference steps`);
