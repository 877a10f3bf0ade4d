#!/usr/bin/env bash
# Builds the CUDA sources for the CPU emulator (native/emu, g++, no CUDA toolkit) and runs
# emu_selftest (the emulator's own instructions and checks), kernel_tests_emu (every kernel against
# its CPU reference, and the CUDA engine against the CPU engine), quant_kernel_tests_emu (the W4A16 and
# FP8 GEMVs and the bit-manipulation widening against theirs), prefill_kernel_tests_emu (the prefill GEMM and
# attention against theirs) and, when gpu-node is built (dist/),
# the tiny-model parity of the emulated CUDA engine (emulated-parity.mjs). `npm run test:kernels` in gpu-node.
#   SEVENTY_EMU_SEED=n   shuffles block order / thread turns differently (default 1)
#   EMU_BUILD=dir        build directory (default native/build/emu)
set -euo pipefail
NATIVE=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${EMU_BUILD:-$NATIVE/build/emu}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
T0=$(date +%s)
mkdir -p "$BUILD"
cmake -S "$NATIVE" -B "$BUILD" -DENGINE_CUDA=OFF -DSEVENTY_EMU=ON -DCMAKE_BUILD_TYPE=Release --log-level=WARNING >/dev/null
if ! cmake --build "$BUILD" -j "$JOBS" --target emu_selftest kernel_tests_emu quant_kernel_tests_emu prefill_kernel_tests_emu engine_cli_emu >"$BUILD/build.log" 2>&1; then
  tail -60 "$BUILD/build.log"
  echo "emulated kernel tests: BUILD FAILED (full log: $BUILD/build.log)"
  exit 1
fi
T1=$(date +%s)
echo "emulated kernel tests: built in $((T1 - T0)) s"
"$BUILD/emu_selftest"
"$BUILD/kernel_tests_emu"
"$BUILD/quant_kernel_tests_emu"
"$BUILD/prefill_kernel_tests_emu"
if [ -f "$NATIVE/../dist/model/index.js" ]; then
  node "$NATIVE/tests/emulated-parity.mjs" "$BUILD/engine_cli_emu" "$BUILD"
  node "$NATIVE/tests/emulated-quant-parity.mjs" "$BUILD/engine_cli_emu" "$BUILD"
else
  echo "SKIPPED tiny-model parity: gpu-node is not built (npm run build)"
fi
echo "emulated kernel tests: ran in $(($(date +%s) - T1)) s"
