import { parseNodeCredential } from "@seventy/sdk/protocol";
import { formatMemoryPlan, memoryPlanError, planMemory } from "../engine/memory-plan.js";
import { planWeightsFormat } from "../engine/native/index.js";
import { formatBytes } from "../model/progress.js";
import { repoFolder } from "../hub/index.js";
import { MAX_SKEW_SECONDS, probeEdge } from "./edge.js";
import type { DoctorFacts, GpuReport, ModelFacts } from "./facts.js";
import { DEFAULT_MAX_NUM_BATCHED_TOKENS, DEFAULT_MAX_NUM_SEQS } from "../scheduler/scheduler.js";

export type CheckStatus = "ok" | "fail" | "warn" | "skip";

/** One line of the checklist; a failed or warned line always says how to fix it. */
export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  fix?: string;
}

export interface DoctorOptions {
  /** A model directory or Hub repo id. */
  model?: string;
  revision?: string;
  edge?: string;
  /** SEVENTY_NODE_CREDENTIAL as set (`snc1.…`), parsed here as the node parses it. */
  credential?: string;
  /** Whether SEVENTY_NODE_SECRET is set: nodes refuse to start with it (they hold their own credential). */
  sharedSecretSet?: boolean;
  host?: string;
  port?: number;
  /** The engine the node will run: GPU lines are needed only for `native`. */
  engine?: string;
  quantization?: "none" | "fp8";
  kvCacheDtype?: "auto" | "fp8";
  embeddingDevice?: "host" | "gpu";
  lmHeadDtype?: "auto" | "fp8";
  gpuMemoryUtilization?: number;
  maxModelLen?: number;
  maxNumSeqs?: number;
}

const MIN_NODE = [20, 19] as const;

const REGISTER_FIX =
  'register the node with the edge (POST /admin/nodes {"id":"<node id>","url":"<its --public-url>"} with the ADMIN_TOKEN) and set SEVENTY_NODE_CREDENTIAL to the credential in the answer (in /etc/seventy/node.env for the systemd unit)';

/**
 * Checks a box before it serves: Node, GPUs, driver vs the addon's CUDA, compute capability, the
 * CUDA flavor, disk and GPU memory against the model, the memory plan, the port, and the edge
 * (reachable, the node's credential accepted, clocks within the signature window). The result passes when no
 * line failed; warnings and skipped lines do not fail it.
 */
export async function runDoctor(opts: DoctorOptions, facts: DoctorFacts): Promise<{ ok: boolean; results: CheckResult[] }> {
  const results: CheckResult[] = [];
  const add = (r: CheckResult) => results.push(r);
  const gpuNeeded = (opts.engine ?? "native") === "native";
  // A GPU line that is not needed (reference or upstream engine) warns instead of failing.
  const gpuFail = (r: Omit<CheckResult, "status">) => add({ ...r, status: gpuNeeded ? "fail" : "warn" });

  const [major, minor] = facts.nodeVersion().split(".").map(Number) as [number, number];
  add(
    major > MIN_NODE[0] || (major === MIN_NODE[0] && minor >= MIN_NODE[1])
      ? { name: "Node.js", status: "ok", detail: `${facts.nodeVersion()} (needs ${MIN_NODE.join(".")}+)` }
      : { name: "Node.js", status: "fail", detail: `${facts.nodeVersion()} is too old`, fix: `install Node ${MIN_NODE.join(".")} or newer (e.g. nvm install 20)` },
  );

  const gpu: GpuReport = await facts.gpus();
  if (gpu.gpus.length === 0) {
    gpuFail({ name: "GPUs", detail: gpu.error ?? "no NVIDIA GPU found", fix: "install the NVIDIA driver so that nvidia-smi lists the GPU (on a rented box: pick an image with the driver); without a GPU only --engine reference or the native CPU flavor run" });
  } else {
    add({ name: "GPUs", status: "ok", detail: gpu.gpus.map((g) => `${g.index}: ${g.name}, ${formatBytes(g.memoryTotalBytes)}, driver ${g.driverVersion}`).join("; ") });
  }

  const addon = await facts.addon();
  if (!addon.flavors.includes("cuda")) {
    gpuFail({ name: "native CUDA build", detail: `not built (built flavors: ${addon.flavors.join(", ") || "none"})`, fix: "build it on this box: npm run native:build:cuda -w @seventy/gpu-node (needs nvcc)" });
  } else if (gpu.gpus.length > 0) {
    // The addon links the CUDA runtime statically: the driver must support that CUDA version or newer.
    const built = addon.cudaBuiltWith;
    const drv = gpu.driverCudaVersion;
    if (built && drv && versionLess(drv, built)) {
      gpuFail({ name: "driver vs CUDA runtime", detail: `the driver supports CUDA ${drv}; the addon was built with CUDA ${built}`, fix: `upgrade the NVIDIA driver to one that supports CUDA ${built}, or rebuild the addon with a CUDA ${drv} toolkit` });
    } else {
      add({ name: "driver vs CUDA runtime", status: built && drv ? "ok" : "skip", detail: built && drv ? `driver supports CUDA ${drv}; addon built with CUDA ${built}` : "CUDA versions unknown (no nvidia-smi header or CMake record)" });
    }
    const bad = gpu.gpus.filter((g) => !archRuns(addon.cudaArchitectures, g.computeCapability));
    if (bad.length > 0) {
      gpuFail({
        name: "compute capability",
        detail: `${bad.map((g) => `${g.name} is sm_${g.computeCapability.replace(".", "")}`).join("; ")}; the addon has code for ${addon.cudaArchitectures.join(", ")}`,
        fix: `rebuild for this GPU: CMAKE_CUDA_ARCHITECTURES=${bad[0]!.computeCapability.replace(".", "")}-real npm run native:build:cuda -w @seventy/gpu-node (the kernels target sm_80 and sm_90a)`,
      });
    } else {
      add({ name: "compute capability", status: "ok", detail: `${gpu.gpus.map((g) => `sm_${g.computeCapability.replace(".", "")}`).join(", ")} covered by ${addon.cudaArchitectures.join(", ")}` });
    }
  }
  if (addon.flavors.includes("cuda")) {
    if (addon.cudaLoad.ok) add({ name: "CUDA flavor loads", status: "ok", detail: addon.cudaLoad.detail });
    else gpuFail({ name: "CUDA flavor loads", detail: addon.cudaLoad.detail, fix: "see the lines above (driver, GPU); `SEVENTY_DEBUG=1 seventy-node serve --engine native` shows the full error" });
  }

  // Disk and GPU memory against the model.
  let model: ModelFacts | undefined;
  if (opts.model) {
    try {
      model = await facts.model(opts.model, opts.revision, facts.hubEnv());
    } catch (err) {
      add({ name: "model", status: "fail", detail: (err as Error).message, fix: "check --model (a directory, or ORG/NAME on the Hub with HF_TOKEN for gated repos)" });
    }
  }
  if (model) {
    const place = model.source === "hub" ? "on the Hub, not downloaded yet" : model.source === "cache" ? `in the Hugging Face cache (${model.dir})` : model.dir!;
    add({ name: "model", status: "ok", detail: `${opts.model}: ${place}; ${formatBytes(model.weightBytes)} of weights` });
    const where = model.source === "hub" ? repoFolder(facts.hubEnv().cacheDir, opts.model!) : model.dir!;
    const free = await facts.freeBytes(where);
    if (free < model.bytesToDownload) {
      add({ name: "disk", status: "fail", detail: `the model needs ${formatBytes(model.bytesToDownload)} more in ${facts.hubEnv().cacheDir}; ${formatBytes(free)} free`, fix: "free disk space, or set HF_HUB_CACHE (or HF_HOME) to a larger disk" });
    } else {
      add({ name: "disk", status: "ok", detail: model.bytesToDownload > 0 ? `${formatBytes(model.bytesToDownload)} to download, ${formatBytes(free)} free` : `model on disk (${model.source === "cache" ? "Hugging Face cache" : "directory"}), ${formatBytes(free)} free` });
    }
    // The native engine's own memory plan for the largest GPU: weights in the format it will hold them
    // (bf16, FP8, AWQ int4), workspace, CUDA graphs, and what is left for the KV cache.
    if (gpu.gpus.length > 0 && model.config) {
      const plan = planMemory({
        model: model.config,
        deviceMemoryBytes: Math.max(...gpu.gpus.map((g) => g.memoryTotalBytes)),
        weights: planWeightsFormat({ config: model.config }, opts.quantization),
        kvCacheDtype: opts.kvCacheDtype === "fp8" ? "fp8" : "bf16",
        embeddingDevice: opts.embeddingDevice,
        lmHeadDtype: opts.lmHeadDtype,
        gpuMemoryUtilization: opts.gpuMemoryUtilization,
        maxModelLen: opts.maxModelLen,
        maxNumSeqs: opts.maxNumSeqs ?? DEFAULT_MAX_NUM_SEQS,
        maxNumBatchedTokens: DEFAULT_MAX_NUM_BATCHED_TOKENS,
      });
      const misfit = memoryPlanError(plan);
      if (misfit === null) add({ name: "memory plan", status: "ok", detail: formatMemoryPlan(plan).map((l) => l.trim()).join("; ") });
      else {
        gpuFail({
          name: "memory plan",
          detail: misfit,
          fix: "serve it with --quantization fp8 and/or --kv-cache-dtype fp8, --lm-head-dtype fp8, --embedding-device host, an AWQ int4 checkpoint, a lower --max-model-len or --max-num-seqs, or a GPU with more memory (H200: 141 GB)",
        });
      }
    } else {
      add({ name: "memory plan", status: "skip", detail: gpu.gpus.length === 0 ? "no GPU to plan for" : "the model's config.json could not be read" });
    }
  } else if (!opts.model) {
    add({ name: "disk / model", status: "skip", detail: "no --model given" });
  }

  const host = opts.host ?? "127.0.0.1";
  const port = opts.port ?? 8100;
  if (await facts.portFree(host, port)) add({ name: "port", status: "ok", detail: `${host}:${port} is free` });
  else add({ name: "port", status: "fail", detail: `${host}:${port} is in use`, fix: `stop what listens there (ss -ltnp 'sport = :${port}') or pick another --port` });

  if (opts.sharedSecretSet) {
    add({ name: "SEVENTY_NODE_SECRET", status: "fail", detail: "is set: nodes no longer use the edge's shared secret, and refuse to start with it", fix: `remove it from this box's environment (and /etc/seventy/node.env); ${REGISTER_FIX}` });
  }

  if (!opts.edge) {
    add({ name: "edge", status: "skip", detail: "no --edge given" });
  } else {
    const credential = opts.credential === undefined ? undefined : (parseNodeCredential(opts.credential) ?? null);
    const edge = await probeEdge(opts.edge, credential ?? undefined, facts.now);
    if (!edge.reachable) {
      add({ name: "edge reachable", status: "fail", detail: `${opts.edge}: ${edge.error}`, fix: "check the URL and this box's outbound HTTPS (curl -sv URL/health)" });
    } else {
      add({ name: "edge reachable", status: "ok", detail: opts.edge });
      const skew = edge.skewSeconds;
      const skewed = skew !== undefined && Math.abs(skew) > MAX_SKEW_SECONDS;
      if (skew === undefined) add({ name: "clock skew", status: "skip", detail: "the edge reported no time (no `time` in /health, no Date header)" });
      else if (skewed) add({ name: "clock skew", status: "fail", detail: `this clock is ${skew > 0 ? "ahead of" : "behind"} the edge's by ${Math.abs(skew)} s; signatures are refused beyond ${MAX_SKEW_SECONDS} s`, fix: "sync the clock: timedatectl set-ntp true (or chronyc makestep)" });
      else add({ name: "clock skew", status: "ok", detail: `${skew} s (limit ${MAX_SKEW_SECONDS} s)` });

      const name = "node credential";
      if (credential === undefined) {
        add({ name, status: "fail", detail: "SEVENTY_NODE_CREDENTIAL is not set", fix: REGISTER_FIX });
      } else if (credential === null) {
        add({ name, status: "fail", detail: "SEVENTY_NODE_CREDENTIAL is not a node credential (expected snc1.<node id>.<key>.<key>)", fix: `copy the whole credential the edge answered with (it is shown once; to get a new one: POST /admin/nodes/<id>/rotate), or ${REGISTER_FIX}` });
      } else if (edge.signature === "accepted") {
        add({ name, status: "ok", detail: `the edge accepts node ${credential.nodeId}'s credential` });
      } else if (edge.signature === "refused") {
        const id = credential.nodeId;
        add(
          skewed
            ? { name, status: "fail", detail: "refused: the clocks differ by more than the signature window", fix: "fix the clock (line above)" }
            : {
                name,
                status: "fail",
                detail: `refused: the edge does not accept node ${id}'s credential (the node is not registered there, its credential was rotated or revoked, or it was issued by another edge)`,
                fix: `ask the edge's admin: GET /admin/nodes lists ${id}? If not, register it: POST /admin/nodes {"id":"${id}","url":"<its --public-url>"}; if so, POST /admin/nodes/${id}/rotate. Then set SEVENTY_NODE_CREDENTIAL to the credential in the answer and restart the node`,
              },
        );
      } else {
        const status = typeof edge.signature === "object" ? edge.signature.unexpected : 0;
        add({ name, status: "fail", detail: `unexpected answer ${status || edge.error}`, fix: "is --edge the seventy edge worker? (its /internal/nodes/heartbeat answers 401 or 400 to this probe)" });
      }
    }
  }

  return { ok: results.every((r) => r.status !== "fail"), results };
}

/** "12.4" < "13.0" */
function versionLess(a: string, b: string): boolean {
  const [a1 = 0, a2 = 0] = a.split(".").map(Number);
  const [b1 = 0, b2 = 0] = b.split(".").map(Number);
  return a1 < b1 || (a1 === b1 && a2 < b2);
}

/**
 * Whether a build for `archs` runs on a GPU of compute capability `cc`: `NN-real` code runs on the same
 * major version at a minor version ≥ its own; `NNa-real` (sm_90a) only on exactly that one; `NN`
 * (PTX) is compiled by the driver for any newer GPU.
 */
export function archRuns(archs: string[], cc: string): boolean {
  const [maj = 0, min = 0] = cc.split(".").map(Number);
  return archs.some((a) => {
    const m = /^(\d+)(\d)(a?)(-real|-virtual)?$/.exec(a);
    if (!m) return false;
    const amaj = Number(m[1]);
    const amin = Number(m[2]);
    if (m[3] === "a") return maj === amaj && min === amin;
    if (m[4] === "-real") return maj === amaj && min >= amin;
    return maj > amaj || (maj === amaj && min >= amin);
  });
}

const MARK: Record<CheckStatus, string> = { ok: "ok  ", fail: "FAIL", warn: "warn", skip: "skip" };

/** The checklist as printed: one line per check, its fix indented below a failed or warned one. */
export function formatDoctor(results: CheckResult[]): string {
  const width = Math.max(...results.map((r) => r.name.length));
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`[${MARK[r.status]}] ${r.name.padEnd(width)}  ${r.detail}`);
    if (r.fix && (r.status === "fail" || r.status === "warn")) lines.push(`       ${" ".repeat(width)}  fix: ${r.fix}`);
  }
  return lines.join("\n");
}
