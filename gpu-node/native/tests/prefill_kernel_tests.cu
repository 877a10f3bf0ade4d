// prefill_kernel_tests: the prefill kernels (prefill_gemm.cu, prefill_attention.cu) against their CPU
// references (kernels/cpu) at shapes that cross every tile edge: activation rows around the 64-row
// tile, weight rows around the 128-row tile and inside a 16-row fragment, k around the 32-wide k-tile
// (and the W4 group), attention queries around the 64-row query tile, keys around the 64-key tile and
// the KV page, causal diagonals, GQA groups and chunks that continue after cached prefix blocks.
// Fresh random inputs, outputs poisoned (NaN) before each run, ‖out − ref‖ / ‖ref‖ against a bf16
// tolerance. Prints one line per check and "N passed, M failed" last; exit status 1 on any failure.
// PREFILL_TESTS_ONLY=gemm,w4,attention picks groups.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../kernels/cpu/cpu_kernels.h"
#include "kernels.h"
#include "prefill.h"
#include "seventy/engine.h"
#include "seventy/numerics.h"
#include "test_device.h"
#include "test_util.h"

using namespace seventy;

static std::string shape(const char* what, bool fp8, int M, int N, int K) {
  return std::string(what) + (fp8 ? " fp8" : " bf16") + " M " + std::to_string(M) + " N " + std::to_string(N) + " K " + std::to_string(K);
}

// ---- prefill_gemm.cu: plain outputs ----
static void testGemm(int M, int N, int K, bool fp8, bool f32out) {
  TestWeight w(N, K, fp8);
  LinearCheck c;
  CHECK_CUDA(checkLinear(cuda::prefillGemmF32Out, cuda::prefillGemmBf16Out, w, M, f32out, c));
  report(c.ok, shape(f32out ? "prefill gemm ->f32" : "prefill gemm ->bf16", fp8, M, N, K), fmt("err %.2e", c.err));
}

// ---- prefill_gemm.cu: gate/up with the SwiGLU epilogue (rows in gateUpRowOrder) ----
static void testSwiglu(int M, int I, int K, bool fp8) {
  double e = NAN;
  CHECK_CUDA(checkSwiglu(
      [](const uint16_t* x, int m, const cuda::LinearWeight& w, uint16_t* y) { return cuda::prefillGemmSwiglu(x, m, w, y, 0); }, M, I, K, fp8, e));
  report(e < 5e-3, shape("prefill gate/up + SwiGLU", fp8, M, 2 * I, K), fmt("err %.2e", e));
}

// ---- prefill_gemm.cu: fused QKV + RoPE + paged KV write (bf16 or fp8 cache) ----
static void testQkvRope(int M, int nh, int nkv, int hd, int K, bool fp8, bool kvFp8) {
  const int bs = 16, numBlocks = (M + bs - 1) / bs + 3;
  FusedWeight w(K, fp8, qkvOrder(nh, nkv, hd));
  auto x = randomBf16(size_t(M) * K, 1.0f);
  QkvRopeCase c(M, nh, nkv, hd, bs, numBlocks, M / 2);  // fp8 cache: the first half of the bytes
  c.args.kvFp8 = kvFp8;
  Dev<uint16_t> dx(x);
  CHECK_CUDA(cuda::prefillGemmQkvRope(dx.p, M, w.fused.dev, c.args, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  const QkvRopeCase::Outcome got = c.compare(linearRef(widen(x), M, w.plain.view), kvFp8);
  // The padding row's slot (the one slot no row owns at index M/2) must still hold the poison.
  const bool untouched = c.untouched(got.kCache, c.allSlots[size_t(M / 2)], kvFp8);
  const double tolKv = kvFp8 ? 3e-2 : 5e-3;  // a near-tie can round to the neighbouring e4m3 code
  report(got.eq < 5e-3 && got.ekv < tolKv && untouched,
         std::string("prefill qkv + rope + paged KV ") + (fp8 ? "fp8" : "bf16") + (kvFp8 ? " kv-fp8" : "") + " M " + std::to_string(M) +
             " heads " + std::to_string(nh) + "/" + std::to_string(nkv) + " hd " + std::to_string(hd),
         fmt("q err %.2e", got.eq) + fmt(" kv err %.2e", got.ekv) + (untouched ? "" : " WROTE A PADDING ROW"));
}

// ---- prefill_gemm.cu: AutoAWQ W4 (float32 out) ----
static void testW4(int M, int N, int K, int G) {
  const TestW4 w4(N, K, G);
  auto x = randomBf16(size_t(M) * K, 1.0f);
  const std::vector<float> ref = linearRef(widen(x), M, w4.view);
  Dev<int32_t> dq(w4.qweight), dz(w4.qzeros);
  Dev<uint16_t> ds(w4.scales16), dx(x);
  Dev<float> y(size_t(M) * N);
  y.poison();
  cuda::W4Weight w;
  w.qweight = dq.p;
  w.qzeros = dz.p;
  w.scales = ds.p;
  w.N = N;
  w.K = K;
  w.groupSize = G;
  CHECK_CUDA(cuda::prefillGemmW4(dx.p, M, w, y.p, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  const double e = relErr(y.get(), ref);
  report(e < 1e-5, "prefill gemm w4 M " + std::to_string(M) + " N " + std::to_string(N) + " K " + std::to_string(K) + " g " + std::to_string(G),
         fmt("err %.2e", e));
}

static void testRejects() {
  cuda::LinearWeight w{cuda::WFormat::FP8, nullptr, nullptr, 32, 24};  // fp8 rows must be 16-byte multiples
  cuda::W4Weight w4;
  w4.N = 16;
  w4.K = 48;
  w4.groupSize = 16;  // a group shorter than the 32-wide k-tile
  const bool ok = cuda::prefillGemmF32Out(nullptr, 4, w, nullptr, 0) == cudaErrorInvalidValue &&
                  cuda::prefillGemmW4(nullptr, 4, w4, nullptr, 0) == cudaErrorInvalidValue && !cuda::prefillGemmW4Supported(w4);
  cudaGetLastError();
  report(ok, "prefill gemm rejects shapes it cannot tile", ok ? "invalid value" : "ACCEPTED");
}

// ---- prefill_attention.cu ----
// seqs: {cached prefix length, chunk length} per sequence; every chunk row attends causally to its
// sequence's prefix and the chunk up to itself. A one-row chunk is a decode row riding along.
struct SeqShape {
  int prefix, chunk;
};
static void testAttention(int nh, int nkv, int hd, int bs, const std::vector<SeqShape>& seqs, bool kvFp8, float qAmp = 1.0f) {
  std::vector<int32_t> tables, rowSeq, tableOffset, ctxLen;
  int numBlocks = 3;  // a few blocks nobody uses
  for (const SeqShape& sq : seqs) numBlocks += (sq.prefix + sq.chunk + bs - 1) / bs;
  std::vector<int32_t> ids(numBlocks);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  int next = 0;
  for (size_t i = 0; i < seqs.size(); i++) {
    const int off = int(tables.size()), total = seqs[i].prefix + seqs[i].chunk;
    for (int b = 0; b < (total + bs - 1) / bs; b++) tables.push_back(ids[size_t(next++)]);
    for (int c = 0; c < seqs[i].chunk; c++) {
      rowSeq.push_back(int(i));
      tableOffset.push_back(off);
      ctxLen.push_back(seqs[i].prefix + c + 1);
    }
  }
  const int rows = int(rowSeq.size());
  std::vector<int32_t> tiles(size_t(2 * rows));
  const int numTiles = cuda::prefillAttentionTiles(rowSeq.data(), rows, tiles.data());
  const size_t cacheElems = size_t(numBlocks) * nkv * bs * hd;
  std::vector<uint16_t> k16, v16;
  std::vector<uint8_t> k8(cacheElems), v8(cacheElems);
  if (kvFp8) {
    std::uniform_int_distribution<int> byte(0, 255);
    auto code = [&] {  // any e4m3 code but NaN (0x7f / 0xff), as the cache writer never stores one
      int b;
      do b = byte(rng);
      while ((b & 0x7f) == 0x7f);
      return uint8_t(b);
    };
    for (auto& b : k8) b = code();
    for (auto& b : v8) b = code();
  } else {
    k16 = randomBf16(cacheElems, 1.0f);
    v16 = randomBf16(cacheElems, 1.0f);
  }
  auto q = randomBf16(size_t(rows) * nh * hd, qAmp);
  Dev<uint16_t> dk(kvFp8 ? fp8Cache(k8) : k16), dv(kvFp8 ? fp8Cache(v8) : v16);
  Dev<uint16_t> dq(q), out(size_t(rows) * nh * hd);
  Dev<int32_t> dt(tables), doff(tableOffset), dctx(ctxLen), dtiles(tiles);
  out.poison();
  cuda::AttentionArgs a = attentionArgs(dq, dk, dv, dt, doff, dctx, out, nh, nkv, hd, bs);
  a.kvFp8 = kvFp8;
  CHECK_CUDA(cuda::prefillAttention(a, dtiles.p, numTiles, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  auto fromFp8 = [](const std::vector<uint8_t>& b) {
    std::vector<float> f(b.size());
    for (size_t i = 0; i < b.size(); i++) f[i] = fp8e4m3ToFloat(b[i]);
    return f;
  };
  const std::vector<float> ref = pagedAttentionRef(widen(q), kvFp8 ? fromFp8(k8) : widen(k16), kvFp8 ? fromFp8(v8) : widen(v16), tables,
                                                   tableOffset, ctxLen, nh, nkv, hd, bs);
  const double e = relErr(widen(out.get()), ref);
  std::string shapes;
  for (const SeqShape& sq : seqs) shapes += (shapes.empty() ? "" : ",") + std::to_string(sq.prefix) + "+" + std::to_string(sq.chunk);
  report(e < 8e-3, "prefill attention heads " + std::to_string(nh) + "/" + std::to_string(nkv) + " hd " + std::to_string(hd) + " bs " +
                       std::to_string(bs) + (kvFp8 ? " kv-fp8" : "") + " seqs " + shapes + (qAmp != 1.0f ? fmt(" q x%.0f", qAmp) : ""),
         fmt("err %.2e", e) + " tiles " + std::to_string(numTiles));
}

int main() {
  rng.seed(20261128);
  const char* only = std::getenv("PREFILL_TESTS_ONLY");
  auto want = [&](const char* g) { return !only || std::strstr(only, g); };
  if (want("gemm")) {
    for (bool fp8 : {false, true}) {
      // rows: one tile and a tail (130 = 2·64 + 2); outputs: a partial 128-row tile and a partial 16-row
      // fragment (200); k: a partial k-tile (264 = 8·32 + 8 bf16, 272 = 8·32 + 16 fp8).
      const int K = fp8 ? 272 : 264;
      testGemm(130, 200, K, fp8, false);
      testGemm(64, 128, K, fp8, true);
      testGemm(1, 24, fp8 ? 32 : 40, fp8, true);
      testSwiglu(70, 72, K, fp8);
      testQkvRope(67, 4, 2, 32, K, fp8, false);
    }
    testQkvRope(33, 2, 1, 64, 128, false, true);
    testRejects();
  }
  if (want("w4")) {
    testW4(130, 200, 256, 128);  // row tail, output tail inside a word's tile, two groups of four k-tiles
    testW4(5, 24, 96, 32);       // one k-tile per group
  }
  if (want("attention")) {
    // 130-row chunk: query tiles 64 + 64 + 2; a chunk after a 37-key cached prefix (keys cross the
    // 64-key tile and 16-key pages off their edges); a decode row; GQA groups of 2 and 4.
    testAttention(4, 2, 16, 16, {{0, 130}, {37, 70}, {99, 1}}, false);
    testAttention(8, 2, 32, 7, {{5, 64}, {0, 3}}, false);
    testAttention(2, 1, 64, 16, {{64, 65}}, true);
    testAttention(2, 2, 128, 16, {{20, 45}}, false, 30.0f);  // large scores: the running max must shift them
    testAttention(4, 1, 128, 32, {{70, 9}, {0, 17}}, true);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
