// quant_kernel_tests: the kernels of quantized weights against their CPU references (kernels/cpu),
// under the CPU emulator in CI (quant_kernel_tests_emu) and on a GPU (quant_kernel_tests):
//   - the integer bit-manipulation widening of e4m3 and fp16 (widen_bits.cuh, the sm_80 FP8 path of
//     gemv.cu), bit-exact against the CPU conversions for every input;
//   - the FP8 skinny GEMM (gemv.cu) against cpu::linear on FP8 weights;
//   - the W4A16 GEMV (gemv_w4.cu) against cpu::linear on AWQ-packed weights, awkward shapes;
//   - paged attention over an FP8 KV cache (decode_attention.cu) against cpu::pagedAttention's FP8 overload.
// Prints one line per check and "N passed, M failed" last; exit status 1 on any failure.
// Standard headers first: the emulator's <cuda_runtime.h> defines CUDA's specifiers (__noinline__ …) as macros.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "../kernels/cpu/cpu_kernels.h"
#include "gemv_w4.h"
#include "kernels.h"
#include "seventy/numerics.h"
#include "cuda_common.cuh"
#include "widen_bits.cuh"
#include "test_device.h"
#include "test_util.h"

using namespace seventy;

template <class T>
static T* upload(const std::vector<T>& h) {
  void* d = nullptr;
  if (cudaMalloc(&d, std::max<size_t>(h.size(), 1) * sizeof(T)) != cudaSuccess) return nullptr;
  cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice);
  return static_cast<T*>(d);
}
template <class T>
static std::vector<T> download(const T* d, size_t n) {
  std::vector<T> h(n);
  cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost);
  return h;
}

// n bf16 values drawn from `nd`.
static std::vector<uint16_t> normalBf16(size_t n, std::normal_distribution<float>& nd) {
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = floatToBf16(nd(rng));
  return v;
}

// ---- bit-manipulation widening, every input ----

__global__ void widenKernel(uint32_t* fp8Pairs, float* f16s, float* nibbles) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;  // 0 .. 65535
  fp8Pairs[i] = fp8x2ToBf16x2Bits(uint32_t(i));
  f16s[i] = f16BitsToFloat(uint32_t(i));
  if (i < 8) nibbles[i] = nibbleToFloat(0x76543210u, 4 * i);  // nibble i holds i
}

static void testWidening() {
  uint32_t* dPairs = nullptr;
  float *dF16 = nullptr, *dNib = nullptr;
  CHECK_CUDA(cudaMalloc(&dPairs, 65536 * 4));
  CHECK_CUDA(cudaMalloc(&dF16, 65536 * 4));
  CHECK_CUDA(cudaMalloc(&dNib, 8 * 4));
  SEVENTY_LAUNCH(dim3(256), 256, 0, 0, widenKernel)(dPairs, dF16, dNib);
  CHECK_CUDA(cudaGetLastError());
  CHECK_CUDA(cudaDeviceSynchronize());
  const std::vector<uint32_t> pairs = download(dPairs, 65536);
  const std::vector<float> f16 = download(dF16, 65536);
  const std::vector<float> nib = download(dNib, 8);
  int bad = 0, checked = 0;
  for (uint32_t p = 0; p < 65536; p++) {
    const uint32_t lo = p & 0xff, hi = p >> 8;
    if ((lo & 0x7f) == 0x7f || (hi & 0x7f) == 0x7f) continue;  // e4m3 NaN: not a weight value
    const uint32_t want = uint32_t(floatToBf16(fp8e4m3ToFloat(uint8_t(lo)))) | (uint32_t(floatToBf16(fp8e4m3ToFloat(uint8_t(hi)))) << 16);
    checked++;
    if (pairs[p] != want) bad++;
  }
  report(bad == 0, "fp8 e4m3 pairs → bf16x2 by bit manipulation (sm_80 path)",
         std::to_string(checked) + " pairs, " + std::to_string(bad) + " differ from the CPU conversion");
  bad = checked = 0;
  for (uint32_t h = 0; h < 65536; h++) {
    if ((h & 0x7c00) == 0x7c00) continue;  // inf/NaN: not a scale value
    checked++;
    const float want = f16ToFloat(uint16_t(h));
    if (floatBits(f16[h]) != floatBits(want)) bad++;
  }
  report(bad == 0, "fp16 → float by bit manipulation (AWQ scales)", std::to_string(checked) + " values, " + std::to_string(bad) + " differ");
  bad = 0;
  for (int i = 0; i < 8; i++)
    if (nib[i] != float(i)) bad++;
  report(bad == 0, "int4 nibble → float (2^23 + q)", std::to_string(bad) + " of 8 differ");
  cudaFree(dPairs);
  cudaFree(dF16);
  cudaFree(dNib);
}

// ---- FP8 skinny GEMM (gemv.cu) ----

static void testFp8Gemv(int M, int N, int K) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> w(size_t(N) * K);
  for (auto& v : w) v = nd(rng) * 0.05f;
  std::vector<uint8_t> q(w.size());
  std::vector<float> scales(N);
  for (int o = 0; o < N; o++) {
    float amax = 0;
    for (int k = 0; k < K; k++) amax = std::fmax(amax, std::fabs(w[size_t(o) * K + k]));
    scales[o] = amax > 0 ? amax / kFp8Max : 1.0f;
    for (int k = 0; k < K; k++) q[size_t(o) * K + k] = floatToFp8e4m3(w[size_t(o) * K + k] / scales[o]);
  }
  const std::vector<uint16_t> x = normalBf16(size_t(M) * K, nd);
  cpu::WeightView view;
  view.type = cpu::WType::FP8;
  view.data = q.data();
  view.scales = scales.data();
  view.rows = N;
  view.cols = K;
  const std::vector<float> ref = linearRef(widen(x), M, view);

  uint8_t* dq = upload(q);
  float* ds = upload(scales);
  uint16_t* dx = upload(x);
  float* dy = upload(std::vector<float>(size_t(M) * N, NAN));
  cuda::LinearWeight lw;
  lw.format = cuda::WFormat::FP8;
  lw.data = dq;
  lw.scales = ds;
  lw.N = N;
  lw.K = K;
  CHECK_CUDA(cuda::gemvF32Out(dx, M, lw, dy, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  const double err = relErr(download(dy, size_t(M) * N), ref);
  char detail[96];
  std::snprintf(detail, sizeof detail, "rel err %.2e", err);
  report(err < 1e-5, "fp8 gemv M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K), detail);
  cudaFree(dq);
  cudaFree(ds);
  cudaFree(dx);
  cudaFree(dy);
}

// ---- W4A16 GEMV (gemv_w4.cu) ----

static void testW4Gemv(int M, int N, int K, int G) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const TestW4 w4(N, K, G);
  const std::vector<uint16_t> x = normalBf16(size_t(M) * K, nd);
  const std::vector<float> ref = linearRef(widen(x), M, w4.view);

  cuda::W4Weight w;
  w.qweight = upload(w4.qweight);
  w.qzeros = upload(w4.qzeros);
  w.scales = upload(w4.scales16);
  w.N = N;
  w.K = K;
  w.groupSize = G;
  float* dy = upload(std::vector<float>(size_t(M) * N, NAN));
  float* work = nullptr;
  CHECK_CUDA(cudaMalloc(&work, cuda::w4GemvWorkspaceBytes(M, N)));
  // x is written by the kernel just before (an identity row permutation), as in the engine, so that a
  // GEMV launched with PDL that read it before griddepcontrol.wait would fail the emulator's PDL check.
  uint16_t* dxHost = upload(x);
  uint16_t* dx = upload(std::vector<uint16_t>(x.size()));
  std::vector<int32_t> identity(static_cast<size_t>(M));
  for (int m = 0; m < M; m++) identity[size_t(m)] = m;
  int32_t* dOrder = upload(identity);
  CHECK_CUDA(cuda::permuteRows(dx, dxHost, dOrder, M, K, 0));
  CHECK_CUDA(cuda::w4Gemv(dx, M, w, dy, work, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  cudaFree(dxHost);
  cudaFree(dOrder);
  const double err = relErr(download(dy, size_t(M) * N), ref);
  char detail[96];
  std::snprintf(detail, sizeof detail, "rel err %.2e", err);
  report(err < 1e-5, "w4a16 gemv M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) + " g=" + std::to_string(G), detail);
  cudaFree(const_cast<int32_t*>(w.qweight));
  cudaFree(const_cast<int32_t*>(w.qzeros));
  cudaFree(const_cast<uint16_t*>(w.scales));
  cudaFree(dx);
  cudaFree(dy);
  cudaFree(work);
}

// ---- paged attention over an FP8 (e4m3, scale 1) KV cache ----

static void testFp8Attention(int numHeads, int numKvHeads, int headDim, int splits) {
  const int bs = 16, numBlocks = 11;
  const std::vector<int> ctx = {5, 23, 37};
  const int rows = int(ctx.size()), kvDim = numKvHeads * headDim;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  // The same e4m3 values in the device layout [block][kvHead][bs][headDim] and the CPU one [slot][kvDim].
  std::vector<uint8_t> kDev(size_t(numBlocks) * bs * kvDim), vDev(kDev.size()), kCpu(kDev.size()), vCpu(kDev.size());
  for (int b = 0; b < numBlocks; b++)
    for (int h = 0; h < numKvHeads; h++)
      for (int t = 0; t < bs; t++)
        for (int d = 0; d < headDim; d++) {
          const size_t dev = ((size_t(b) * numKvHeads + h) * bs + t) * headDim + d, cpu = (size_t(b) * bs + t) * kvDim + size_t(h) * headDim + d;
          kDev[dev] = kCpu[cpu] = floatToFp8e4m3(nd(rng) * 2.0f);
          vDev[dev] = vCpu[cpu] = floatToFp8e4m3(nd(rng));
        }
  // Block tables: row r uses blocks numBlocks-1-r, numBlocks-1-r-3, … (not contiguous, not 0-based).
  std::vector<int32_t> tables, offsets, ctxLen;
  for (int r = 0; r < rows; r++) {
    offsets.push_back(int32_t(tables.size()));
    ctxLen.push_back(ctx[size_t(r)]);
    for (int b = 0; b < (ctx[size_t(r)] + bs - 1) / bs; b++) tables.push_back(numBlocks - 1 - r - 3 * b);
  }
  const size_t qDim = size_t(numHeads) * headDim;
  const std::vector<uint16_t> q = normalBf16(rows * qDim, nd);
  const std::vector<float> qf = widen(q);
  std::vector<float> ref(rows * qDim);
  std::vector<double> scratch;
  for (int r = 0; r < rows; r++) {
    cpu::pagedAttention(ref.data() + r * qDim, qf.data() + r * qDim, kCpu.data(), vCpu.data(), tables.data() + offsets[size_t(r)], bs,
                        ctx[size_t(r)] - 1, numHeads, numKvHeads, headDim, scratch);
  }
  Dev<uint16_t> dq(q), dk(fp8Cache(kDev)), dv(fp8Cache(vDev)), out(rows * qDim);
  Dev<int32_t> dt(tables), doff(offsets), dctx(ctxLen);
  Dev<float> partial(cuda::attentionWorkspaceBytes(rows, splits, numHeads, headDim) / 4 + 1);
  out.poison();
  cuda::AttentionArgs a = attentionArgs(dq, dk, dv, dt, doff, dctx, out, numHeads, numKvHeads, headDim, bs);
  a.partial = partial.p;
  a.numSplits = splits;
  a.kvFp8 = true;
  CHECK_CUDA(cuda::pagedAttention(a, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  const double err = relErr(widen(out.get()), ref);
  char detail[96];
  std::snprintf(detail, sizeof detail, "rel err %.2e (bf16 output)", err);
  report(err < 1e-2, "fp8-kv attention heads " + std::to_string(numHeads) + "/" + std::to_string(numKvHeads) + " d=" + std::to_string(headDim) +
                         " splits=" + std::to_string(splits), detail);
}

int main() {
  rng.seed(20261127);
  testWidening();
  for (int M : {1, 5, 33}) testFp8Gemv(M, 40, 272);
  testFp8Gemv(3, 264, 528);
  for (int M : {1, 3, 4, 9}) testW4Gemv(M, 136, 384, 128);
  testW4Gemv(17, 24, 256, 64);
  testW4Gemv(2, 264, 96, 32);  // more words than one block's 32 lanes; 3 groups over 3 splits
  testW4Gemv(1, 8, 32, 32);    // one word, one group
  // The tensor-core kernel's pipeline: 5 tiles through 3 stages, odd words per row (4-byte copies), two blocks;
  // 4.5 tiles through 4 stages with a group ending mid-tile (8-byte copies); M > 64 in two slices.
  testW4Gemv(40, 200, 1280, 128);
  testW4Gemv(12, 144, 1152, 64);
  testW4Gemv(70, 16, 512, 128);
  testW4Gemv(3, 40, 96, 24);  // group size not a multiple of 16: the CUDA-core kernel
  testFp8Attention(8, 2, 32, 1);
  testFp8Attention(8, 2, 32, 3);
  testFp8Attention(4, 4, 128, 2);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
