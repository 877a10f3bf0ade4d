import { execFile } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { readdir, stat, statfs } from "node:fs/promises";
import { createServer } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";
import { downloadFile } from "@huggingface/hub";
import { defaultAddonDir, loadNativeAddon } from "../engine/native/addon.js";
import { findCachedSnapshot, hubEnv, HubError, isRepoId, planDownload, type HubEnv } from "../hub/index.js";
import { parseLlamaConfig, readLlamaConfig } from "../model/config.js";
import type { LlamaConfig } from "../model/types.js";

export interface GpuInfo {
  index: number;
  name: string;
  driverVersion: string;
  /** "9.0" */
  computeCapability: string;
  memoryTotalBytes: number;
  memoryFreeBytes: number;
}

export interface GpuReport {
  gpus: GpuInfo[];
  /** The newest CUDA the driver supports ("CUDA Version" in nvidia-smi's header). */
  driverCudaVersion?: string;
  /** Why no GPU could be listed. */
  error?: string;
}

export interface AddonReport {
  /** Flavors of the native addon that are built. */
  flavors: ("cpu" | "cuda")[];
  /** The CUDA toolkit the CUDA flavor was compiled with (its runtime is linked statically), e.g. "13.0". */
  cudaBuiltWith?: string;
  /** CMAKE_CUDA_ARCHITECTURES of the build, e.g. ["80-real", "90a-real"]. */
  cudaArchitectures: string[];
  /** Whether the CUDA flavor loads and finds a usable GPU, and what it said. */
  cudaLoad: { ok: boolean; detail: string };
}

export interface ModelFacts {
  /** Where the model is: a directory, the Hugging Face cache, or still on the Hub. */
  source: "dir" | "cache" | "hub";
  dir?: string;
  /** Bytes a download still has to fetch (0 when on disk). */
  bytesToDownload: number;
  /** Bytes of the safetensors weights as stored. */
  weightBytes: number;
  config?: LlamaConfig;
}

/**
 * Everything `doctor` learns about the machine, as functions: the one seam through which tests put
 * in the facts of a machine they are not on (no GPU, a full disk, a skewed clock, a small GPU). What
 * follows from the facts (the memory plan, the verdicts) is computed for real; the edge checks are real
 * HTTP, with `now` as their clock.
 */
export interface DoctorFacts {
  nodeVersion(): string;
  gpus(): Promise<GpuReport>;
  addon(): Promise<AddonReport>;
  /** Free bytes on the file system holding `dir` (or its nearest existing parent). */
  freeBytes(dir: string): Promise<number>;
  model(spec: string, revision: string | undefined, env: HubEnv): Promise<ModelFacts>;
  portFree(host: string, port: number): Promise<boolean>;
  /** Epoch milliseconds. */
  now(): number;
  hubEnv(): HubEnv;
}

const run = promisify(execFile);

async function nvidiaSmi(): Promise<GpuReport> {
  let csv: string;
  try {
    ({ stdout: csv } = await run("nvidia-smi", ["--query-gpu=index,name,driver_version,compute_cap,memory.total,memory.free", "--format=csv,noheader,nounits"], { timeout: 15_000 }));
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string; stdout?: string };
    if (e.code === "ENOENT") return { gpus: [], error: "nvidia-smi not found (no NVIDIA driver installed)" };
    return { gpus: [], error: `nvidia-smi failed: ${(e.stdout || e.stderr || e.message).trim().split("\n")[0]}` };
  }
  const gpus = csv
    .trim()
    .split("\n")
    .filter(Boolean)
    .map((line) => {
      const [index, name, driverVersion, cc, total, free] = line.split(",").map((s) => s.trim());
      return { index: Number(index), name: name!, driverVersion: driverVersion!, computeCapability: cc!, memoryTotalBytes: Number(total) * 2 ** 20, memoryFreeBytes: Number(free) * 2 ** 20 };
    });
  let driverCudaVersion: string | undefined;
  try {
    const { stdout } = await run("nvidia-smi", [], { timeout: 15_000 });
    driverCudaVersion = /CUDA Version:\s*([\d.]+)/.exec(stdout)?.[1];
  } catch {
    driverCudaVersion = undefined;
  }
  return { gpus, driverCudaVersion };
}

/** The build's own record of its CUDA toolkit and architectures (CMake's cache beside the addon). */
function cudaBuildInfo(addonDir: string): { version?: string; architectures: string[] } {
  const buildDir = join(addonDir, "..");
  let version: string | undefined;
  let architectures = ["80-real", "90a-real"]; // CMakeLists.txt's default
  try {
    for (const d of readdirSync(join(buildDir, "CMakeFiles"))) {
      const f = join(buildDir, "CMakeFiles", d, "CMakeCUDACompiler.cmake");
      if (!existsSync(f)) continue;
      const m = /set\(CMAKE_CUDA_COMPILER_VERSION "(\d+\.\d+)/.exec(readFileSync(f, "utf8"));
      if (m) version = m[1];
    }
    const cache = readFileSync(join(buildDir, "CMakeCache.txt"), "utf8");
    const archs = /^CMAKE_CUDA_ARCHITECTURES:\w+=(.+)$/m.exec(cache)?.[1];
    if (archs) architectures = archs.split(/[;\s]+/).filter(Boolean);
  } catch {
    // No CMake files beside the addon (a packaged build): report what is known.
  }
  return { version, architectures };
}

async function addonReport(): Promise<AddonReport> {
  const dir = defaultAddonDir();
  const flavors: AddonReport["flavors"] = [];
  if (existsSync(join(dir, "seventy_cpu.node"))) flavors.push("cpu");
  if (existsSync(join(dir, "seventy_cuda.node"))) flavors.push("cuda");
  const build = flavors.includes("cuda") ? cudaBuildInfo(dir) : { version: undefined, architectures: [] };
  let cudaLoad: AddonReport["cudaLoad"];
  try {
    cudaLoad = { ok: true, detail: loadNativeAddon("cuda", dir).reason };
  } catch (err) {
    cudaLoad = { ok: false, detail: (err as Error).message };
  }
  return { flavors, cudaBuiltWith: build.version, cudaArchitectures: build.architectures, cudaLoad };
}

async function safetensorsBytes(dir: string): Promise<number> {
  let total = 0;
  for (const f of await readdir(dir)) if (f.endsWith(".safetensors")) total += (await stat(join(dir, f))).size;
  return total;
}

async function modelFacts(spec: string, revision: string | undefined, env: HubEnv): Promise<ModelFacts> {
  const onDisk = async (dir: string, source: "dir" | "cache"): Promise<ModelFacts> => ({
    source,
    dir,
    bytesToDownload: 0,
    weightBytes: await safetensorsBytes(dir),
    config: await readLlamaConfig(join(dir, "config.json")),
  });
  if (existsSync(spec) || !isRepoId(spec)) return onDisk(spec, "dir");
  const cached = await findCachedSnapshot(env.cacheDir, spec, revision ?? "main");
  if (cached) return onDisk(cached, "cache");
  if (env.offline) throw new HubError(`${spec}@${revision ?? "main"} is not complete in the Hugging Face cache (${env.cacheDir}) and HF_HUB_OFFLINE=1`);
  const plan = await planDownload({ repo: spec, revision, env });
  const blob = await downloadFile({ repo: spec, path: "config.json", revision: plan.commit, hubUrl: env.endpoint, accessToken: env.token });
  return {
    source: "hub",
    bytesToDownload: plan.missingBytes,
    weightBytes: plan.files.filter((f) => f.path.endsWith(".safetensors")).reduce((s, f) => s + f.size, 0),
    config: blob ? parseLlamaConfig(JSON.parse(await blob.text()), `${spec}/config.json`) : undefined,
  };
}

async function freeBytes(dir: string): Promise<number> {
  // The cache folder may not exist yet: ask about its nearest existing parent.
  let d = dir;
  while (!existsSync(d) && d !== join(d, "..")) d = join(d, "..");
  const s = await statfs(d);
  return s.bavail * s.bsize;
}

function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once("error", () => resolve(false));
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolve(true)));
  });
}

/** The facts of this machine. */
export function systemFacts(): DoctorFacts {
  return {
    nodeVersion: () => process.versions.node,
    gpus: nvidiaSmi,
    addon: addonReport,
    freeBytes,
    model: modelFacts,
    portFree,
    now: () => Date.now(),
    hubEnv: () => hubEnv(),
  };
}
