#!/usr/bin/env bash
# The GPU device check, in one call of at most 8 minutes on a GPU machine (CUDA 13, nvcc, CMake,
# Python with torch + transformers; Node not needed). Every step after the build runs under a timeout
# that is its own cap or what is left of BUDGET_S (default 470 s from the start, so the report is written
# by 8 minutes), whichever is less; a step the budget no longer allows is SKIPPED and counts as a failure.
# Expected on one H100 (16 cores): build ~90 s, kernel tests ~30 s, quantization tests ~15 s, parity
# ~40 s, decode benchmarks (16 layers, projected to 80) ~120 s, GEMV benchmark ~20 s, torch ~60 s, then
# compute-sanitizer on small shapes with what is left (~90 s). Steps:
#   1. builds the CUDA flavor (sm_80 + sm_90a, static cudart) with the ptxas register/spill report;
#   2. kernel_tests: every kernel against its CPU reference on awkward shapes, CUDA engine vs CPU engine,
#      with SEVENTY_CUDA_SYNC_DEBUG=1 (a synchronization after every launch names a faulting kernel);
#      quant_kernel_tests: the W4A16 and FP8 GEMVs and the bit-manipulation widening;
#   3. tiny-model parity: engine_cli (CUDA bf16, CUDA fp8, CPU) vs the TypeScript reference's greedy
#      tokens/logits and vs transformers' LlamaForCausalLM from the same directory;
#   4. 70B-shaped decode benchmark (synthetic weights) at batch 1, 8, 32, 64 with 1k contexts, next to
#      torch on the same shapes, with copy bandwidth and matmul peak measured in the same run (and at
#      batch 1 and 64 once more without programmatic dependent launch, and once with residual add +
#      RMSNorm as separate launches instead of fused into the GEMVs); the decode GEMVs of one 70B
#      layer in bf16, FP8 and W4A16 (quant_bench), per layer and per linear, at batch 1, 8, 32, 64
#      against copy bandwidth, next to torch's matmuls on the same shapes; the prefill kernels
#      (prefill_bench: tiled GEMMs against the mma.sync peak, prefill and decode attention at 2k/8k)
#      next to torch on the same shapes (their tests, benchmark and torch run are capped at 90 s in all);
#   5. kernel_tests once more at small shapes (KERNEL_TESTS_SMALL=1) under compute-sanitizer's memcheck,
#      racecheck and synccheck (SANITIZE=0 skips that);
#   6. prints one table and appends it to BENCHMARKS.md (card, date, commit).
#
# Prepare on a machine with Node first (the tiny model and the reference outputs):
#   npm run build && node gpu-node/bench/make-device-inputs.mjs      # → gpu-node/native/build/device-inputs
# then on the GPU machine, from the repository root, with that folder present:
#   COMMIT=<sha> bash gpu-node/bench/device-check.sh
# Outputs (also under $OUT when set): device-check.log, build.log, report.md, BENCHMARKS.md.
# Debug mode: SEVENTY_CUDA_SYNC_DEBUG=1 bash gpu-node/bench/device-check.sh makes every step (parity and
# benchmarks too) synchronize after each launch and name the kernel that faulted; the engine then
# captures no graphs (slower; its numbers are not benchmarks).
set -uo pipefail
export PYTHONUNBUFFERED=1

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
NATIVE=$ROOT/gpu-node/native
INPUTS=${DEVICE_INPUTS:-$NATIVE/build/device-inputs}
OUTDIR=${OUT:-/tmp/seventy-device-check}
BUILD=${BUILD_DIR:-/tmp/seventy-build}
COMMIT=${COMMIT:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}
LOG=$OUTDIR/device-check.log
mkdir -p "$OUTDIR"
: >"$LOG"
T0=$(date +%s)
say() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$LOG"; }
run() { "$@" 2>&1 | tee -a "$LOG"; return "${PIPESTATUS[0]}"; }
FAILED=0
BUDGET=${BUDGET_S:-470}
# runb CAP cmd...: cmd under a timeout of CAP seconds or what the budget leaves (10 s kept for the report).
runb() {
  local cap=$1 left
  shift
  left=$((BUDGET - ($(date +%s) - T0) - 10))
  if [ "$left" -lt 5 ]; then
    say "SKIPPED (time budget of ${BUDGET}s spent): $*"
    return 1
  fi
  [ "$cap" -lt "$left" ] && left=$cap
  run timeout "$left" "$@"
}

say "device check, commit $COMMIT"
run nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv,noheader

say "build (ENGINE_CUDA=ON, sm_80 + sm_90a)"
GEN=(); command -v ninja >/dev/null && GEN=(-G Ninja)
if ! { cmake -S "$NATIVE" -B "$BUILD" "${GEN[@]}" -DENGINE_CUDA=ON -DSEVENTY_PTXAS_VERBOSE=ON -DCMAKE_BUILD_TYPE=Release &&
       cmake --build "$BUILD" -j "$(nproc)"; } >"$OUTDIR/build.log" 2>&1; then
  tail -40 "$OUTDIR/build.log" | tee -a "$LOG"
  say "BUILD FAILED"
  exit 1
fi
grep -E "spill stores|Used [0-9]+ registers" "$OUTDIR/build.log" | sort | uniq -c | sort -rn | head -5 >>"$LOG"

say "kernel tests (SEVENTY_CUDA_SYNC_DEBUG=1)"
SEVENTY_CUDA_SYNC_DEBUG=1 runb 90 "$BUILD/kernel_tests" || FAILED=1

say "quantization kernel tests (W4A16, FP8 GEMV, bit-manipulation widening)"
SEVENTY_CUDA_SYNC_DEBUG=1 runb 40 "$BUILD/quant_kernel_tests" || FAILED=1
say "prefill kernel tests (tiled GEMM bf16/FP8/W4, prefill attention)"
SEVENTY_CUDA_SYNC_DEBUG=1 runb 15 "$BUILD/prefill_kernel_tests" || FAILED=1

if [ -f "$INPUTS/manifest.txt" ]; then
  say "tiny-model parity"
  STEPS=$(head -1 "$INPUTS/steps.txt")
  PARITY_ARGS=()
  for cfg in "cuda-bf16 cuda none" "cuda-fp8 cuda fp8" "cpu cpu none"; do
    set -- $cfg
    runb 30 "$BUILD/engine_cli_cuda" --manifest "$INPUTS/manifest.txt" --prompts "$INPUTS/prompts.txt" --steps "$STEPS" \
      --backend "$2" --quant "$3" --tokens "/tmp/parity-$1.txt" --logits "/tmp/parity-$1.f32" || FAILED=1
    PARITY_ARGS+=(--run "$1" "/tmp/parity-$1.txt" "/tmp/parity-$1.f32")
  done
  runb 90 python3 "$ROOT/gpu-node/bench/parity.py" "$INPUTS" "${PARITY_ARGS[@]}" || FAILED=1
else
  say "SKIPPED parity: $INPUTS/manifest.txt missing (run make-device-inputs.mjs where Node is, and carry the folder)"
  FAILED=1
fi

# FP8 is what fits 70B on an 80 GB card; a 141 GB card also runs bf16 (layers that do not fit are projected).
MEM_MB=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits | head -1)
QUANTS=${QUANTS:-$([ "${MEM_MB:-0}" -gt 100000 ] && echo "bf16 fp8" || echo "fp8")}
for q in $QUANTS; do
  say "decode benchmark ($q)"
  runb 120 "$BUILD/decode_bench" --quant "$q" --batches 1,8,32,64 --ctx 1024 --steps 12 --layers 16 || FAILED=1
done
say "decode benchmark (fp8 weights, FP8 KV cache)"
runb 50 "$BUILD/decode_bench" --quant fp8 --kv-cache-dtype fp8 --batches 1,64 --ctx 1024 --steps 12 --layers 16 || FAILED=1
say "decode benchmark (fp8 weights, no programmatic dependent launch)"
SEVENTY_PDL=0 runb 50 "$BUILD/decode_bench" --quant fp8 --batches 1,64 --ctx 1024 --steps 12 --layers 16 || FAILED=1
say "decode benchmark (fp8 weights, residual add + RMSNorm as separate launches)"
SEVENTY_FUSED_NORM=0 runb 40 "$BUILD/decode_bench" --quant fp8 --batches 1,64 --ctx 1024 --steps 12 --layers 16 || FAILED=1
say "W4A16 / FP8 / bf16 decode GEMV bandwidth (one 70B layer, and each linear alone)"
runb 60 "$BUILD/quant_bench" --batches 1,8,32,64 --iters 20 || FAILED=1
say "prefill benchmark (70B-shaped GEMMs at 512/2048/8192 rows, prefill and decode attention at 2k/8k)"
runb 30 "$BUILD/prefill_bench" --rows 512,2048,8192 --ctx 2048,8192 --iters 5 || FAILED=1
say "torch baseline (prefill shapes)"
runb 20 python3 "$ROOT/gpu-node/bench/torch_baseline.py" --prefill || FAILED=1
say "torch baseline"
runb 120 python3 "$ROOT/gpu-node/bench/torch_baseline.py" --batches 1,8,32,64 --ctx 1024 || FAILED=1

if [ "${SANITIZE:-1}" != 0 ]; then
  SANITIZER=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [ -x "$SANITIZER" ]; then
    for tool in memcheck synccheck racecheck; do
      say "kernel tests, small shapes, under compute-sanitizer --tool $tool"
      KERNEL_TESTS_SMALL=1 runb 60 "$SANITIZER" --tool "$tool" --error-exitcode 3 --print-limit 20 "$BUILD/kernel_tests" || FAILED=1
    done
    say "prefill kernel tests under compute-sanitizer --tool racecheck (ldmatrix tiles in shared memory)"
    runb 25 "$SANITIZER" --tool racecheck --error-exitcode 3 --print-limit 20 "$BUILD/prefill_kernel_tests" || FAILED=1
  else
    say "SKIPPED compute-sanitizer: not found"
    FAILED=1
  fi
fi

say "report"
python3 "$ROOT/gpu-node/bench/device_report.py" --log "$LOG" --benchmarks "$ROOT/BENCHMARKS.md" --commit "$COMMIT" --out "$OUTDIR/report.md"
cp "$ROOT/BENCHMARKS.md" "$OUTDIR/BENCHMARKS.md"
say "done (failures: $FAILED)"
exit $FAILED
