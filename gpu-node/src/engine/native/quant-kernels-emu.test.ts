/**
 * The CUDA kernels of quantized weights (kernels/gemv_w4.cu, the sm_80 FP8 widening of gemv.cu and
 * widen_bits.cuh) compiled for the CPU emulator (native/emu) and run against their CPU references:
 * native/tests/quant_kernel_tests.cu. Builds with CMake into native/build/emu (about a minute on
 * two cores the first time, seconds after), no CUDA toolkit needed.
 */
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const NATIVE = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..", "native");
const BUILD = join(NATIVE, "build", "emu");

function run(cmd: string, args: string[]) {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

describe("quantization kernels under the CUDA emulator", () => {
  it("W4A16 GEMV, FP8 GEMV and the bit-manipulation widening match their CPU references", () => {
    run("cmake", ["-S", NATIVE, "-B", BUILD, "-DENGINE_CUDA=OFF", "-DSEVENTY_EMU=ON", "-DCMAKE_BUILD_TYPE=Release", "--log-level=WARNING"]);
    run("cmake", ["--build", BUILD, "-j", "2", "--target", "quant_kernel_tests_emu", "--", "--no-print-directory"]);
    const r = spawnSync(join(BUILD, "quant_kernel_tests_emu"), [], { encoding: "utf8", timeout: 120_000, env: { ...process.env, SEVENTY_EMU_SEED: "1" } });
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines.at(-1)).toBe("14 passed, 0 failed");
    expect(lines.filter((l) => l.startsWith("PASS w4a16 gemv"))).toHaveLength(7);
    expect(lines.some((l) => /^PASS fp8 e4m3 pairs → bf16x2 by bit manipulation .* 0 differ/.test(l))).toBe(true);
  }, 900_000);
});
