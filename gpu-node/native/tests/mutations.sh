#!/usr/bin/env bash
# Proof that the emulated kernel tests can fail: plants one deliberate bug at a time in a scratch copy
# of the CUDA sources, rebuilds kernel_tests_emu (CPU emulator, g++) and runs it. A mutation is CAUGHT
# when the run fails (a kernel_tests check, or one of the emulator's memcheck / initcheck / racecheck /
# synccheck). Prints one line per mutation and exits 1 if any was missed (or no longer applies).
#
#   bash gpu-node/native/tests/mutations.sh            # all (about 10 min on 2 cores; not part of npm test)
#
# Each mutation runs the kernel_tests groups that cover the mutated code (the whole suite runs once,
# unmutated, first), stopping at the first failure; group "quant" runs quant_kernel_tests instead and
# groups spelled "prefill:gemm,w4" run prefill_kernel_tests' groups (PREFILL_TESTS_ONLY).
# Do not edit the sources while it runs: each mutation starts from the current file.
#   bash gpu-node/native/tests/mutations.sh rope mask  # only those whose name contains a word given
#
# Each mutation is an exact text replacement that must match exactly once, so a source change that
# moves the mutated line makes the script fail loudly instead of testing nothing.
set -uo pipefail
NATIVE=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MUTATION_DIR:-$(mktemp -d /tmp/seventy-mutations.XXXXXX)}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
SRC=$WORK/src
BUILD=$WORK/build

# name | kernel_tests groups to run (KERNEL_TESTS_ONLY) | file (under native/) | original text | mutated text
MUTATIONS=(
  "paged KV addressing off by one (attention K/V read)|attention,engine|kernels/decode_attention.cu|raw[p] = KV::load(cache, base);|raw[p] = KV::load(cache, base + HD);"
  "decode attention: next tile's K prefetched from the wrong tile|attention|kernels/decode_attention.cu|loadTile(a.kCache, tile0 + kTile, kraw);|loadTile(a.kCache, tile0, kraw);"
  "paged KV slot off by one (QKV epilogue cache write)|qkv,engine|kernels/epilogues.cuh|+ slot % a.blockSize) * a.headDim;|+ (slot + 1) % a.blockSize) * a.headDim;"
  "removed __syncthreads (rmsnorm partial sums)|rmsnorm|kernels/rmsnorm.cu|  if ((threadIdx.x & 31) == 0) warpSums[threadIdx.x >> 5] = sumSq;
  __syncthreads();|  if ((threadIdx.x & 31) == 0) warpSums[threadIdx.x >> 5] = sumSq;"
  "removed __syncthreads (attention scores before softmax)|attention|kernels/decode_attention.cu|      for (int i = 0; i < KEEP; i++) sc[headBase + i][ti] = valid ? v[i] : -INFINITY;  // lanes holding the same head write the same value
    }
    __syncthreads();|      for (int i = 0; i < KEEP; i++) sc[headBase + i][ti] = valid ? v[i] : -INFINITY;  // lanes holding the same head write the same value
    }"
  "removed __syncthreads (gemv pipeline: tile landed, slot free)|gemv|kernels/gemv.cu|    __syncthreads();             // everyone's have; and everyone is done with the slot refilled next
|"
  "gemv pipeline waits one cp.async group short|gemv|kernels/gemv.cu|    cpAsyncWait<kStages - 2>();|    cpAsyncWait<kStages - 1>();"
  "gemv pipeline refills the slot being read|gemv|kernels/gemv.cu|      issueW(next, (next - t0) % kStages);|      issueW(next, (tile - t0) % kStages);"
  "gemv x tail guard off by one|gemv|kernels/gemv.cu|      const bool ok = m < M && k < K;|      const bool ok = m < M && k <= K;"
  "gemv reads x before griddepcontrol.wait (PDL)|engine|kernels/gemv.cu|  pdlWait();
  if constexpr (NORM) {|  if constexpr (NORM) {"
  "fused norm: the residual gets the unrounded GEMV output|fusednorm|kernels/gemv.cu|const float v = *r + __uint_as_float(uint32_t(toBf16Bits(acc[nt][2 * hi + h])) << 16);|const float v = *r + acc[nt][2 * hi + h];"
  "fused norm: sum of squares misses the tile's upper 8 columns|fusednorm|kernels/gemv.cu|        ss += __shfl_xor_sync(0xffffffffu, ss, 16);
|"
  "fused norm: the last tile's partial sum is not read|fusednorm|kernels/gemv.cu|for (int i = lane; i < nin.tiles; i += 32)|for (int i = lane; i < nin.tiles - 1; i += 32)"
  "fused norm: partial sums read before griddepcontrol.wait (PDL)|fusednorm|kernels/gemv.cu|  pdlWait();
  if constexpr (NORM) {
    // Row m's inverse RMS from the previous GEMV's per-tile partial sums (rows past M: unused).
    for (int m = warp; m < kMRows; m += kWarps) {
      float ss = 0.0f;
      if (m < M)
        for (int i = lane; i < nin.tiles; i += 32) ss += nin.parts[int64_t(m) * nin.tiles + i];
      ss = warpSum(ss);
      if (lane == 0) invRms[m] = rsqrtf(ss / float(K) + nin.eps);
    }
    __syncthreads();
  }|  if constexpr (NORM) {
    // Row m's inverse RMS from the previous GEMV's per-tile partial sums (rows past M: unused).
    for (int m = warp; m < kMRows; m += kWarps) {
      float ss = 0.0f;
      if (m < M)
        for (int i = lane; i < nin.tiles; i += 32) ss += nin.parts[int64_t(m) * nin.tiles + i];
      ss = warpSum(ss);
      if (lane == 0) invRms[m] = rsqrtf(ss / float(K) + nin.eps);
    }
    __syncthreads();
  }
  pdlWait();"
  "split-K: the last split sums only its own column's first split|fusednorm|kernels/gemv.cu|for (int sp = 0; sp < int(gridDim.y); sp++)|for (int sp = 0; sp < 1; sp++)"
  "split-K: the split counter is not reset for the next launch|fusednorm|kernels/gemv.cu|    if (threadIdx.x == 0) sk.counters[blockIdx.x] = 0;  // ready for the next launch
|"
  "split-K: a split runs one tile too many (overlaps the next split)|fusednorm|kernels/gemv.cu|min(numTiles, t0 + sk.tilesPer)|min(numTiles, t0 + sk.tilesPer + 1)"
  "engine: the norm after a fused o_proj adds delta_ again|engine|host/cuda_engine.cu|      pending_ = Pending::InResidual;|      pending_ = Pending::Delta;"
  "wrong shuffle mask (warp sum)|rmsnorm|kernels/cuda_common.cuh|for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);|for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0x0000ffffu, v, o);"
  "wrong shuffle lane (attention head reduce-scatter)|attention|kernels/decode_attention.cu|v[i] = keep + __shfl_xor_sync(kFullMask, send, OFF);|v[i] = keep + __shfl_xor_sync(kFullMask, send, OFF / 2 + (OFF == 1));"
  "swapped mma fragment index (bf16 A registers 1 and 2)|gemv|kernels/gemv.cu|          af[s][1] = rb[2 * s];
          af[s][2] = ra[2 * s + 1];|          af[s][1] = ra[2 * s + 1];
          af[s][2] = rb[2 * s];"
  "swapped mma fragment index (fp8 A halves)|gemv|kernels/gemv.cu|          af[s][0] = fp8x2ToBf16x2(ra[s]);|          af[s][0] = fp8x2ToBf16x2(ra[s] >> 16);"
  "wrong RoPE pair|qkv|kernels/gemv.cu|        float x = acc[nt][h], y = acc[nt][2 + h];|        float x = acc[nt][h], y = acc[nt][3 - h];"
  "RoPE rotation sign|qkv|kernels/epilogues.cuh|const float rx = x * cs - y * sn, ry = y * cs + x * sn;|const float rx = x * cs + y * sn, ry = y * cs - x * sn;"
  "gemv row guard off by one|gemv|kernels/gemv.cu|      const bool ok = n < N && kb < rowBytes;|      const bool ok = n <= N && kb < rowBytes;"
  "W4 pipeline: removed __syncthreads (tile landed, slot free)|quant|kernels/gemv_w4.cu|    cpAsyncWait<kStages - 2>();
    __syncthreads();|    cpAsyncWait<kStages - 2>();"
  "W4 nibble order (AWQ) ignored|quant|kernels/gemv_w4.cu|const int shift = 4 * ((g & 1) * 4 + (g >> 1));|const int shift = 4 * g;"
  "W4 reads qweight rows without the swizzle|quant|kernels/gemv_w4.cu|ws + r * kW4RowBytes + 8 * w4UnitPos(kb + 4 * t + i, warp)|ws + r * kW4RowBytes + 8 * warp"
  "W4 reads x before griddepcontrol.wait (PDL)|quant|kernels/gemv_w4.cu|  pdlWait();
  for (int st = 0; st < kStages - 1; st++) {
    if (st < numTiles) issueX(st, st);
    cpAsyncCommit();
  }|  for (int st = 0; st < kStages - 1; st++) {
    if (st < numTiles) issueX(st, st);
    cpAsyncCommit();
  }
  pdlWait();"
  "W4 last group never scaled in|quant|kernels/gemv_w4.cu|      if ((kb + 16) % G == 0) {|      if ((kb + 16) % G == 0 && kb + 16 < K) {"
  "rmsnorm launched past its __launch_bounds__|rmsnorm|kernels/rmsnorm.cu|SEVENTY_LAUNCH(rows, kNormThreads, smem, s, rmsNormResidualKernel<D>)|SEVENTY_LAUNCH(rows, 2 * kNormThreads, smem, s, rmsNormResidualKernel<D>)"
  "sampling: pick not initialised|sampling|kernels/sampling.cu|    if (threadIdx.x == 0) pick = 0x7fffffff;
|"
  "split-K combine without the max shift (overflows on large scores)|attention|kernels/decode_attention.cu|const float w = exp2f(ml[2 * part] - M);|const float w = exp2f(ml[2 * part]);"
  "embedding reads the next table row|embedding|kernels/embedding.cu|const uint16_t* src = table + int64_t(ids[r]) * hidden;|const uint16_t* src = table + int64_t(ids[r] + 1) * hidden;"
  "engine step: context lengths not uploaded|engine|host/cuda_engine.cu|    CU(cudaMemcpyAsync(dRowCtx_, hRowCtx_, R, cudaMemcpyHostToDevice, stream_));
|"
  "engine graph: padding rows write the KV cache|engine|host/cuda_engine.cu|        hRowSlot_[r] = -1;|        hRowSlot_[r] = 0;"
  "prefill gemm: removed __syncthreads after the next tile's store|prefill:gemm|kernels/prefill_gemm.cu|    if (kt + 1 < numTiles) storeTile<F>(st, sW[buf ^ 1], sX[buf ^ 1]);
    __syncthreads();|    if (kt + 1 < numTiles) storeTile<F>(st, sW[buf ^ 1], sX[buf ^ 1]);"
  "prefill gemm: ldmatrix A rows addressed with the wrong k half|prefill:gemm|kernels/prefill_gemm.cu|(wn * 32 + mt * 16 + (lane & 15)) * kLd + ks * 16 + (lane >> 4) * 8);|(wn * 32 + mt * 16 + (lane & 15)) * kLd + ks * 16 + ((lane >> 3) & 1) * 8);"
  "prefill gemm: activation row guard off by one|prefill:gemm|kernels/prefill_gemm.cu|st.x = m < o.M && k < o.K|st.x = m <= o.M && k < o.K"
  "prefill gemm: W4 group scale applied after every k-tile|prefill:w4|kernels/prefill_gemm.cu|if (((kt + 1) * kBK) % o.G == 0) {|if (((kt + 1) * kBK) % 32 == 0) {"
  "prefill attention: causal mask off by one|prefill:attention|kernels/prefill_attention.cu|const bool live = key < (j < 2 ? ctxA : ctxB);|const bool live = key <= (j < 2 ? ctxA : ctxB);"
  "prefill attention: V read without ldmatrix .trans|prefill:attention|kernels/prefill_attention.cu|ldmatrixX4<true>(r, sV + |ldmatrixX4<false>(r, sV + "
  "prefill attention: KV page offset off by one|prefill:attention|kernels/prefill_attention.cu|+ p % a.blockSize) * D + part * kChunk;|+ (p + 1) % a.blockSize) * D + part * kChunk;"
  "prefill attention: softmax without the running-max shift|prefill:attention|kernels/prefill_attention.cu|      s[nt][0] = exp2f(s[nt][0] - shA);|      s[nt][0] = exp2f(s[nt][0]);"
  "engine: prefill attention tiles not uploaded|engine|host/cuda_engine.cu|    CU(cudaMemcpyAsync(dAttnTiles_, hAttnTiles_, sizeof(int32_t) * 2 * numAttnTiles_, cudaMemcpyHostToDevice, stream_));
|"
)

want() {
  [ ${#SELECT[@]} -eq 0 ] && return 0
  for w in "${SELECT[@]}"; do [[ "$1" == *"$w"* ]] && return 0; done
  return 1
}
SELECT=("$@")

mkdir -p "$SRC" "$BUILD"
# Copies get the current time (not the original's), so a file restored after a mutation is always rebuilt.
rsync -r --checksum --delete --exclude build "$NATIVE/" "$SRC/" 2>/dev/null ||
  { rm -rf "$SRC" && mkdir -p "$SRC" && (cd "$NATIVE" && tar --exclude=./build -cf - .) | (cd "$SRC" && tar -m -xf -); }
build() {
  cmake --build "$BUILD" -j "$JOBS" --target kernel_tests_emu quant_kernel_tests_emu prefill_kernel_tests_emu -- --no-print-directory \
    >"$WORK/build.log" 2>&1
}
# Runs the groups a mutation names: quant_kernel_tests_emu ("quant"), prefill_kernel_tests_emu's
# ("prefill:..."), or kernel_tests_emu's.
run() {
  case $1 in
    quant) timeout 600 "$BUILD/quant_kernel_tests_emu" ;;
    prefill:*) PREFILL_TESTS_ONLY=${1#prefill:} timeout 600 "$BUILD/prefill_kernel_tests_emu" ;;
    *) KERNEL_TESTS_ONLY=$1 KERNEL_TESTS_FAIL_FAST=1 timeout 600 "$BUILD/kernel_tests_emu" ;;
  esac
}
cmake -S "$SRC" -B "$BUILD" -DENGINE_CUDA=OFF -DSEVENTY_EMU=ON -DCMAKE_BUILD_TYPE=Release --log-level=WARNING >/dev/null
echo "mutations: building the unmutated tests in $WORK"
if ! build || ! timeout 600 "$BUILD/kernel_tests_emu" >"$WORK/baseline.log" 2>&1 || ! timeout 600 "$BUILD/quant_kernel_tests_emu" >>"$WORK/baseline.log" 2>&1 ||
  ! timeout 600 "$BUILD/prefill_kernel_tests_emu" >>"$WORK/baseline.log" 2>&1; then
  echo "the unmutated sources do not pass; see $WORK/build.log and $WORK/baseline.log"
  exit 1
fi

caught=0 missed=0 broken=0
for m in "${MUTATIONS[@]}"; do
  IFS='|' read -r -d '' name groups file old new <<<"$m" || true
  new=${new%$'\n'}
  want "$name" || continue
  cp "$NATIVE/$file" "$SRC/$file"
  if ! OLD="$old" NEW="$new" perl -0777 -i -pe '$c = s/\Q$ENV{OLD}\E/$ENV{NEW}/g; END { exit($c == 1 ? 0 : 3) }' "$SRC/$file"; then
    echo "BROKEN  $name: the original text no longer appears exactly once in $file"
    broken=$((broken + 1))
    continue
  fi
  t0=$(date +%s)
  if ! build; then
    how="does not compile"
    result=CAUGHT
  elif run "$groups" >"$WORK/run.log" 2>&1; then
    result=MISSED
    how="all kernel tests pass"
  else
    result=CAUGHT
    how=$(grep -m1 -E "FAILED in|^FAIL" "$WORK/run.log" | cut -c1-150)
    [ -z "$how" ] && how="exit status $(tail -1 "$WORK/run.log" | cut -c1-80)"
    chk=$(grep -m1 -A1 "FAILED in" "$WORK/run.log" | tail -1 | sed 's/^ *//' | cut -c1-120)
    [ -n "$chk" ] && how="$how — $chk"
  fi
  cp "$NATIVE/$file" "$SRC/$file"
  [ $result = CAUGHT ] && caught=$((caught + 1)) || missed=$((missed + 1))
  printf '%-7s %-62s (%ss) %s\n' "$result" "$name" "$(($(date +%s) - t0))" "$how"
done
echo "mutations: $caught caught, $missed missed, $broken no longer apply"
[ $missed -eq 0 ] && [ $broken -eq 0 ]
