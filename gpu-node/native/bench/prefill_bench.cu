// prefill_bench: the prefill kernels at Llama-3.1-70B shapes (hidden 8192, intermediate 28672, 64/8
// heads of 128) with synthetic data, against ceilings measured in the same run:
//   - the GEMMs of one layer (fused qkv, o, fused gate/up with SwiGLU, down) through prefill_gemm.cu in
//     bf16, FP8 and W4 (AutoAWQ, group 128; unfused q, k, v, o, gate, up, down as the engine runs them)
//     at 512 / 2048 / 8192 rows, as TFLOP/s and as a fraction of the mma.sync bf16 peak (a tight
//     loop of independent m16n8k16 MMAs on every SM; on Hopper that is below the wgmma peak);
//   - prefill attention (prefill_attention.cu, one sequence's causal prefill, bf16 and FP8 KV) at 2k and
//     8k tokens as TFLOP/s against the same peak, and decode attention (decode_attention.cu, split-K
//     as the engine picks it) at 2k and 8k contexts, batch 32, as K/V bytes read per second against
//     the device's copy bandwidth.
//   - where the toolkit has cuBLASLt (SEVENTY_HAVE_CUBLASLT, set by CMake when it finds the library),
//     the same bf16 layer GEMMs through cublasLtMatmul, side by side (comparison only: the engine's
//     GEMMs are always prefill_gemm.cu).
//   prefill_bench [--rows 512,2048,8192] [--ctx 2048,8192] [--iters 5]
// Prints one line per measurement and `RESULT {json}` lines for the device report.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include <cuda_runtime.h>

#include "bench_util.h"
#include "kernels.h"
#include "prefill.h"

#ifdef SEVENTY_HAVE_CUBLASLT
#include <cublasLt.h>
#endif

using namespace seventy;

constexpr int H = 8192, I = 28672, NH = 64, NKV = 8, HD = 128;

// Device bytes with a repeating pseudo-random pattern (16 MB, drawn once), each byte masked (keeps
// bf16 / e4m3 / fp16 finite); `seed` rotates the pattern so tensors differ.
static void* deviceFill(size_t bytes, uint8_t mask, uint32_t seed) {
  static const std::vector<uint8_t> pattern = [] {
    std::vector<uint8_t> p(size_t(16) << 20);
    std::mt19937 rng(1);
    for (auto& b : p) b = uint8_t(rng());
    return p;
  }();
  void* d = nullptr;
  CK(cudaMalloc(&d, std::max<size_t>(bytes, 16)));
  std::vector<uint8_t> h(std::min(bytes, pattern.size()));
  for (size_t i = 0; i < h.size(); i++) h[i] = pattern[(i + size_t(seed) * 4099) % pattern.size()] & mask;
  for (size_t off = 0; off < bytes; off += h.size())
    CK(cudaMemcpy(static_cast<uint8_t*>(d) + off, h.data(), std::min(h.size(), bytes - off), cudaMemcpyHostToDevice));
  return d;
}

// The mma.sync ceiling: 8 independent accumulator chains per warp, operands in registers.
constexpr int kPeakChains = 8;
__global__ void mmaPeakKernel(float* out, int iters) {
  const uint32_t a[4] = {0x3f803f80u ^ threadIdx.x, 0x3f803f80u, 0x3f803f80u, 0x3f803f80u};
  const uint32_t b0 = 0x3c003c00u, b1 = 0x3c003c00u;
  float c[kPeakChains][4] = {};
  for (int i = 0; i < iters; i++)
#pragma unroll
    for (int j = 0; j < kPeakChains; j++)
      asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
                   : "+f"(c[j][0]), "+f"(c[j][1]), "+f"(c[j][2]), "+f"(c[j][3])
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  float s = 0;
  for (int j = 0; j < kPeakChains; j++) s += c[j][0] + c[j][1] + c[j][2] + c[j][3];
  if (s == 1234.5f) out[threadIdx.x] = s;  // keeps the loop alive
}

static double mmaPeak(int sms) {
  float* out = nullptr;
  CK(cudaMalloc(&out, 1024 * sizeof(float)));
  const int iters = 4096, blocks = sms * 8, threads = 256;
  const double ms = timeMs(5, [&] { mmaPeakKernel<<<blocks, threads>>>(out, iters); });
  cudaFree(out);
  const double flops = double(blocks) * (threads / 32) * iters * kPeakChains * (2.0 * 16 * 8 * 16);
  return flops / (ms * 1e-3);
}

#ifdef SEVENTY_HAVE_CUBLASLT
#define CKLT(x)                                                                            \
  do {                                                                                     \
    cublasStatus_t s_ = (x);                                                               \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                     \
      std::fprintf(stderr, "%s:%d %s: cuBLAS status %d\n", __FILE__, __LINE__, #x, int(s_)); \
      std::exit(1);                                                                        \
    }                                                                                      \
  } while (0)

// y[m, n] = Σ_k x[m, k] · W[n, k] (bf16 in and out, float32 accumulation) with cuBLASLt's heuristic
// algorithm: in column-major terms yᵀ (N × M) = op(W) · xᵀ with W read as a K × N matrix, transposed.
struct LtGemm {
  cublasLtHandle_t h = nullptr;
  void* workspace = nullptr;
  size_t wsBytes = size_t(64) << 20;
  LtGemm() {
    CKLT(cublasLtCreate(&h));
    CK(cudaMalloc(&workspace, wsBytes));
  }
  ~LtGemm() {
    cublasLtDestroy(h);
    cudaFree(workspace);
  }
  void run(const uint16_t* x, int M, const void* W, int N, int K, uint16_t* y, cudaStream_t s) {
    cublasLtMatmulDesc_t op;
    CKLT(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CKLT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CKLT(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    cublasLtMatrixLayout_t la, lb, lc;
    CKLT(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, K, N, K));
    CKLT(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, K, M, K));
    CKLT(cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, N, M, N));
    cublasLtMatmulPreference_t pref;
    CKLT(cublasLtMatmulPreferenceCreate(&pref));
    CKLT(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsBytes, sizeof wsBytes));
    cublasLtMatmulHeuristicResult_t best;
    int found = 0;
    CKLT(cublasLtMatmulAlgoGetHeuristic(h, op, la, lb, lc, lc, pref, 1, &best, &found));
    if (found < 1) {
      std::fprintf(stderr, "cuBLASLt has no algorithm for %d x %d x %d\n", M, N, K);
      std::exit(1);
    }
    const float alpha = 1.0f, beta = 0.0f;
    CKLT(cublasLtMatmul(h, op, &alpha, W, la, x, lb, &beta, y, lc, y, lc, &best.algo, workspace, wsBytes, s));
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
  }
};
#endif

static std::vector<int> parseList(const char* s) {
  std::vector<int> v;
  for (const char* p = s; *p;) {
    v.push_back(std::atoi(p));
    while (*p && *p != ',') p++;
    if (*p) p++;
  }
  return v;
}

int main(int argc, char** argv) {
  std::vector<int> rowsList = {512, 2048, 8192}, ctxList = {2048, 8192};
  int iters = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--rows")) rowsList = parseList(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--ctx")) ctxList = parseList(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--iters")) iters = std::max(1, std::atoi(argv[i + 1]));
    else {
      std::fprintf(stderr, "usage: prefill_bench [--rows 512,2048,8192] [--ctx 2048,8192] [--iters 5]\n");
      return 2;
    }
  }
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  const double copyBw = copyBandwidth(), peak = mmaPeak(prop.multiProcessorCount);
  std::printf("device %s: copy %.2f TB/s, mma.sync bf16 peak %.0f TFLOP/s\n", prop.name, copyBw / 1e12, peak / 1e12);
  std::printf("RESULT {\"kind\":\"prefill_ceilings\",\"copy_tbps\":%.3f,\"mma_tflops\":%.1f}\n", copyBw / 1e12, peak / 1e12);

  // ---- GEMMs of one layer ----
  const int maxRows = *std::max_element(rowsList.begin(), rowsList.end());
  auto* x = static_cast<uint16_t*>(deviceFill(size_t(maxRows) * I * 2, 0x3f, 1));
  void* y = nullptr;
  CK(cudaMalloc(&y, size_t(maxRows) * 2 * I * 4));
  struct Lin {
    const char* name;
    int N, K;
  };
  const Lin fused[] = {{"qkv", (NH + 2 * NKV) * HD, H}, {"o", H, H}, {"gate_up", 2 * I, H}, {"down", H, I}};
  const Lin unfused[] = {{"q", NH * HD, H}, {"k", NKV * HD, H}, {"v", NKV * HD, H}, {"o", H, H}, {"gate", I, H}, {"up", I, H}, {"down", H, I}};
  double layerFlopsPerRow = 0;
  for (const Lin& l : fused) layerFlopsPerRow += 2.0 * l.N * l.K;
  for (const char* fmt : {"bf16", "fp8", "w4"}) {
    const bool w4 = !std::strcmp(fmt, "w4"), fp8 = !std::strcmp(fmt, "fp8");
    std::vector<cuda::LinearWeight> lw;
    std::vector<cuda::W4Weight> w4w;
    std::vector<void*> owned;
    if (w4) {
      for (const Lin& l : unfused) {
        cuda::W4Weight w;
        w.N = l.N, w.K = l.K, w.groupSize = 128;
        owned.push_back(deviceFill(size_t(l.K) * l.N / 2, 0xff, 2));
        w.qweight = static_cast<const int32_t*>(owned.back());
        owned.push_back(deviceFill(size_t(l.K / 128) * l.N / 2, 0xff, 3));
        w.qzeros = static_cast<const int32_t*>(owned.back());
        owned.push_back(deviceFill(size_t(l.K / 128) * l.N * 2, 0x3b, 4));
        w.scales = static_cast<const uint16_t*>(owned.back());
        w4w.push_back(w);
      }
    } else {
      for (const Lin& l : fused) {
        cuda::LinearWeight w;
        w.format = fp8 ? cuda::WFormat::FP8 : cuda::WFormat::BF16;
        w.N = l.N, w.K = l.K;
        owned.push_back(deviceFill(size_t(l.N) * l.K * (fp8 ? 1 : 2), fp8 ? 0x77 : 0x3f, 5));
        w.data = owned.back();
        if (fp8) {
          owned.push_back(deviceFill(size_t(l.N) * 4, 0x00, 6));
          w.scales = static_cast<const float*>(owned.back());
        }
        lw.push_back(w);
      }
    }
    for (int rows : rowsList) {
      const double ms = timeMs(iters, [&] {
        if (w4) {
          for (const cuda::W4Weight& w : w4w) CK(cuda::prefillGemmW4(x, rows, w, static_cast<float*>(y), 0));
        } else {
          CK(cuda::prefillGemmBf16Out(x, rows, lw[0], static_cast<uint16_t*>(y), 0));
          CK(cuda::prefillGemmBf16Out(x, rows, lw[1], static_cast<uint16_t*>(y), 0));
          CK(cuda::prefillGemmSwiglu(x, rows, lw[2], static_cast<uint16_t*>(y), 0));
          CK(cuda::prefillGemmBf16Out(x, rows, lw[3], static_cast<uint16_t*>(y), 0));
        }
      });
      const double tflops = layerFlopsPerRow * rows / (ms * 1e-3) / 1e12;
      std::printf("prefill gemm %-4s rows %5d: %8.3f ms per layer, %6.1f TFLOP/s, %3.0f%% of the mma.sync peak\n", fmt, rows, ms, tflops,
                  100 * tflops * 1e12 / peak);
      std::printf("RESULT {\"kind\":\"prefill_gemm\",\"format\":\"%s\",\"rows\":%d,\"layer_ms\":%.4f,\"tflops\":%.2f,\"frac_peak\":%.4f}\n", fmt, rows,
                  ms, tflops, tflops * 1e12 / peak);
    }
#ifdef SEVENTY_HAVE_CUBLASLT
    if (!w4 && !fp8) {
      LtGemm lt;
      for (int rows : rowsList) {
        const double ms = timeMs(iters, [&] {
          for (const cuda::LinearWeight& w : lw) lt.run(x, rows, w.data, w.N, w.K, static_cast<uint16_t*>(y), 0);
        });
        const double tflops = layerFlopsPerRow * rows / (ms * 1e-3) / 1e12;
        std::printf("cublasLt gemm bf16 rows %5d: %8.3f ms per layer, %6.1f TFLOP/s, %3.0f%% of the mma.sync peak\n", rows, ms, tflops,
                    100 * tflops * 1e12 / peak);
        std::printf("RESULT {\"kind\":\"prefill_gemm\",\"engine\":\"cublasLt\",\"format\":\"bf16\",\"rows\":%d,\"layer_ms\":%.4f,"
                    "\"tflops\":%.2f,\"frac_peak\":%.4f}\n",
                    rows, ms, tflops, tflops * 1e12 / peak);
      }
    }
#endif
    for (void* p : owned) cudaFree(p);
  }
  cudaFree(x);
  cudaFree(y);

  // ---- attention over a paged cache (16-token pages, shuffled) ----
  const int bs = 16, decodeBatch = 32;
  for (int ctx : ctxList) {
    for (bool kv8 : {false, true}) {
      const int pagesPerSeq = (ctx + bs - 1) / bs, seqs = decodeBatch;
      const size_t elem = kv8 ? 1 : 2, cacheElems = size_t(seqs) * pagesPerSeq * NKV * bs * HD;
      auto* k = static_cast<uint16_t*>(deviceFill(cacheElems * elem, kv8 ? 0x77 : 0x3f, 7));
      auto* v = static_cast<uint16_t*>(deviceFill(cacheElems * elem, kv8 ? 0x77 : 0x3f, 8));
      std::vector<int32_t> pages(size_t(seqs) * pagesPerSeq);
      std::iota(pages.begin(), pages.end(), 0);
      std::shuffle(pages.begin(), pages.end(), std::mt19937(9));
      int32_t *dPages = nullptr, *dOff = nullptr, *dCtx = nullptr, *dTiles = nullptr;
      CK(cudaMalloc(&dPages, pages.size() * 4));
      CK(cudaMemcpy(dPages, pages.data(), pages.size() * 4, cudaMemcpyHostToDevice));
      // Prefill: sequence 0's whole prompt in one chunk.
      std::vector<int32_t> off(ctx, 0), ctxLen(ctx), rowSeq(ctx, 0), tiles(size_t(2) * ctx);
      for (int r = 0; r < ctx; r++) ctxLen[r] = r + 1;
      const int numTiles = cuda::prefillAttentionTiles(rowSeq.data(), ctx, tiles.data());
      CK(cudaMalloc(&dOff, size_t(ctx) * 4));
      CK(cudaMalloc(&dCtx, size_t(ctx) * 4));
      CK(cudaMalloc(&dTiles, tiles.size() * 4));
      CK(cudaMemcpy(dOff, off.data(), off.size() * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dCtx, ctxLen.data(), ctxLen.size() * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dTiles, tiles.data(), tiles.size() * 4, cudaMemcpyHostToDevice));
      auto* q = static_cast<uint16_t*>(deviceFill(size_t(ctx) * NH * HD * 2, 0x3f, 10));
      uint16_t* out = nullptr;
      CK(cudaMalloc(&out, size_t(ctx) * NH * HD * 2));
      cuda::AttentionArgs a;
      a.q = q, a.kCache = k, a.vCache = v, a.blockTables = dPages, a.tableOffset = dOff, a.ctxLen = dCtx, a.out = out;
      a.rows = ctx, a.numHeads = NH, a.numKvHeads = NKV, a.headDim = HD, a.blockSize = bs, a.kvFp8 = kv8;
      double ms = timeMs(iters, [&] { CK(cuda::prefillAttention(a, dTiles, numTiles, 0)); });
      const double flops = 4.0 * NH * HD * (double(ctx) * (ctx + 1) / 2);  // QKᵀ and PV over the causal half
      std::printf("prefill attention ctx %5d kv %-4s: %8.3f ms, %6.1f TFLOP/s, %3.0f%% of the mma.sync peak\n", ctx, kv8 ? "fp8" : "bf16", ms,
                  flops / (ms * 1e-3) / 1e12, 100 * flops / (ms * 1e-3) / peak);
      std::printf("RESULT {\"kind\":\"prefill_attention\",\"ctx\":%d,\"kv\":\"%s\",\"ms\":%.4f,\"tflops\":%.2f,\"frac_peak\":%.4f}\n", ctx,
                  kv8 ? "fp8" : "bf16", ms, flops / (ms * 1e-3) / 1e12, flops / (ms * 1e-3) / peak);

      // Decode: `seqs` sequences of ctx cached tokens, one query row each, split-K as the engine picks it.
      std::vector<int32_t> dOffH(seqs), dCtxH(seqs, ctx);
      for (int s = 0; s < seqs; s++) dOffH[s] = s * pagesPerSeq;
      CK(cudaMemcpy(dOff, dOffH.data(), seqs * 4, cudaMemcpyHostToDevice));
      CK(cudaMemcpy(dCtx, dCtxH.data(), seqs * 4, cudaMemcpyHostToDevice));
      int splits = std::max(1, std::min({(3 * prop.multiProcessorCount + seqs * NKV - 1) / (seqs * NKV), (ctx + 63) / 64, 64}));
      float* partial = nullptr;
      CK(cudaMalloc(&partial, cuda::attentionWorkspaceBytes(seqs, splits, NH, HD)));
      a.rows = seqs, a.numSplits = splits, a.partial = partial;
      ms = timeMs(iters * 4, [&] { CK(cuda::pagedAttention(a, 0)); });
      const double bytes = 2.0 * seqs * double(ctx) * NKV * HD * elem;
      std::printf("decode attention ctx %5d kv %-4s batch %d (%d splits): %8.3f ms, %6.2f TB/s of K/V, %3.0f%% of copy bandwidth\n", ctx,
                  kv8 ? "fp8" : "bf16", seqs, splits, ms, bytes / (ms * 1e-3) / 1e12, 100 * bytes / (ms * 1e-3) / copyBw);
      std::printf("RESULT {\"kind\":\"decode_attention\",\"ctx\":%d,\"kv\":\"%s\",\"batch\":%d,\"ms\":%.4f,\"tbps\":%.3f,\"frac_copy\":%.4f}\n", ctx,
                  kv8 ? "fp8" : "bf16", seqs, ms, bytes / (ms * 1e-3) / 1e12, bytes / (ms * 1e-3) / copyBw);
      for (void* p : {static_cast<void*>(k), static_cast<void*>(v), static_cast<void*>(q), static_cast<void*>(out), static_cast<void*>(partial),
                      static_cast<void*>(dPages), static_cast<void*>(dOff), static_cast<void*>(dCtx), static_cast<void*>(dTiles)})
        cudaFree(p);
    }
  }
  return 0;
}
