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
  TestWeight w(N, K, fp8, randomBf16(size_t(N) * K, 0.08f));
  auto x = randomBf16(size_t(M) * K, 1.0f);
  Dev<uint16_t> dx(x);
  std::vector<float> got;
  if (f32out) {
    Dev<float> y(size_t(M) * N);
    y.poison();
    CHECK_CUDA(cuda::prefillGemmF32Out(dx.p, M, w.dev, y.p, 0));
    CHECK_CUDA(cudaDeviceSynchronize());
    got = y.get();
  } else {
    Dev<uint16_t> y(size_t(M) * N);
    y.poison();
    CHECK_CUDA(cuda::prefillGemmBf16Out(dx.p, M, w.dev, y.p, 0));
    CHECK_CUDA(cudaDeviceSynchronize());
    got = widen(y.get());
  }
  std::vector<float> ref(size_t(M) * N);
  cpu::linear(ref.data(), widen(x).data(), M, w.view);
  const double e = relErr(got, ref);
  const double tol = f32out ? 1e-5 : 4e-3;  // f32 out: only summation order; bf16 out: one rounding
  report(e < tol, shape(f32out ? "prefill gemm ->f32" : "prefill gemm ->bf16", fp8, M, N, K), fmt("err %.2e", e));
}

// ---- prefill_gemm.cu: gate/up with the SwiGLU epilogue (rows in gateUpRowOrder) ----
static void testSwiglu(int M, int I, int K, bool fp8) {
  auto gateUp = randomBf16(size_t(2 * I) * K, 0.08f);
  std::vector<int32_t> order(2 * I);
  cuda::gateUpRowOrder(I, order.data());
  std::vector<uint16_t> permuted(gateUp.size());
  for (int i = 0; i < 2 * I; i++) std::copy_n(gateUp.begin() + size_t(order[i]) * K, K, permuted.begin() + size_t(i) * K);
  TestWeight w(2 * I, K, fp8, permuted), wPlain(2 * I, K, fp8, gateUp);
  auto x = randomBf16(size_t(M) * K, 1.0f);
  Dev<uint16_t> dx(x), y(size_t(M) * I);
  y.poison();
  CHECK_CUDA(cuda::prefillGemmSwiglu(dx.p, M, w.dev, y.p, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<float> both(size_t(M) * 2 * I), ref(size_t(M) * I), up(size_t(M) * I);
  cpu::linear(both.data(), widen(x).data(), M, wPlain.view);
  for (int m = 0; m < M; m++)
    for (int j = 0; j < I; j++) {
      ref[size_t(m) * I + j] = both[size_t(m) * 2 * I + j];
      up[size_t(m) * I + j] = both[size_t(m) * 2 * I + I + j];
    }
  cpu::siluMul(ref.data(), up.data(), int64_t(M) * I);
  const double e = relErr(widen(y.get()), ref);
  report(e < 5e-3, shape("prefill gate/up + SwiGLU", fp8, M, 2 * I, K), fmt("err %.2e", e));
}

// ---- prefill_gemm.cu: fused QKV + RoPE + paged KV write (bf16 or fp8 cache) ----
static void testQkvRope(int M, int nh, int nkv, int hd, int K, bool fp8, bool kvFp8) {
  const int rowsQkv = (nh + 2 * nkv) * hd, bs = 16, numBlocks = (M + bs - 1) / bs + 3;
  auto wq = randomBf16(size_t(rowsQkv) * K, 0.08f);
  std::vector<int32_t> order(rowsQkv);
  cuda::qkvRowOrder(nh, nkv, hd, order.data());
  std::vector<uint16_t> permuted(wq.size());
  for (int i = 0; i < rowsQkv; i++) std::copy_n(wq.begin() + size_t(order[i]) * K, K, permuted.begin() + size_t(i) * K);
  TestWeight w(rowsQkv, K, fp8, permuted), wPlain(rowsQkv, K, fp8, wq);
  auto x = randomBf16(size_t(M) * K, 1.0f);
  std::vector<int32_t> pos(M), slots(M), allSlots(size_t(numBlocks) * bs);
  std::iota(allSlots.begin(), allSlots.end(), 0);
  std::shuffle(allSlots.begin(), allSlots.end(), rng);
  for (int m = 0; m < M; m++) {
    pos[m] = int(rng() % 131072);
    slots[m] = m == M / 2 ? -1 : allSlots[size_t(m)];  // a padding row writes nothing
  }
  RopeScaling rs;
  rs.llama3 = true;
  rs.factor = 8;
  rs.lowFreqFactor = 1;
  rs.highFreqFactor = 4;
  rs.originalMaxPositionEmbeddings = 8192;
  std::vector<float> inv = cpu::ropeInvFreq(hd, 500000, rs);
  const size_t cacheElems = size_t(numBlocks) * nkv * bs * hd;
  Dev<uint16_t> dx(x), q(size_t(M) * nh * hd), kc(cacheElems), vc(cacheElems);  // fp8: the first half of the bytes
  Dev<int32_t> dpos(pos), dslots(slots);
  Dev<float> dinv(inv);
  q.poison();
  kc.poison();
  vc.poison();
  cuda::QkvRopeArgs a;
  a.positions = dpos.p;
  a.slots = dslots.p;
  a.invFreq = dinv.p;
  a.q = q.p;
  a.kCache = kc.p;
  a.vCache = vc.p;
  a.numHeads = nh;
  a.numKvHeads = nkv;
  a.headDim = hd;
  a.blockSize = bs;
  a.kvFp8 = kvFp8;
  CHECK_CUDA(cuda::prefillGemmQkvRope(dx.p, M, w.dev, a, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<float> all(size_t(M) * rowsQkv);
  cpu::linear(all.data(), widen(x).data(), M, wPlain.view);
  std::vector<float> refQ(size_t(M) * nh * hd), gotQ = widen(q.get()), refKV, gotKV;
  const auto hk = kc.get(), hv = vc.get();
  const uint8_t *bk = reinterpret_cast<const uint8_t*>(hk.data()), *bv = reinterpret_cast<const uint8_t*>(hv.data());
  for (int m = 0; m < M; m++) {
    float* row = all.data() + size_t(m) * rowsQkv;
    cpu::applyRope(row, nh + nkv, hd, inv.data(), pos[m]);
    std::copy_n(row, nh * hd, refQ.begin() + size_t(m) * nh * hd);
    const int s = slots[m];
    if (s < 0) continue;
    for (int h = 0; h < nkv; h++)
      for (int d = 0; d < hd; d++) {
        const size_t at = ((size_t(s / bs) * nkv + h) * bs + s % bs) * hd + d;
        const float rk = row[(nh + h) * hd + d], rv = row[(nh + nkv + h) * hd + d];
        // An fp8 cache holds the reference rounded to e4m3 (the kernel rounds the same float32 sum).
        refKV.push_back(kvFp8 ? fp8e4m3ToFloat(floatToFp8e4m3(rk)) : rk);
        refKV.push_back(kvFp8 ? fp8e4m3ToFloat(floatToFp8e4m3(rv)) : rv);
        gotKV.push_back(kvFp8 ? fp8e4m3ToFloat(bk[at]) : bf16ToFloat(hk[at]));
        gotKV.push_back(kvFp8 ? fp8e4m3ToFloat(bv[at]) : bf16ToFloat(hv[at]));
      }
  }
  // The padding row's slot (the one slot no row owns at index M/2) must still hold the poison.
  const int padSlot = allSlots[size_t(M / 2)];
  const size_t padAt = ((size_t(padSlot / bs) * nkv) * bs + padSlot % bs) * hd;
  const bool untouched = kvFp8 ? bk[padAt] == 0xff : hk[padAt] == 0xffff;
  const double eq = relErr(gotQ, refQ), ekv = relErr(gotKV, refKV);
  const double tolKv = kvFp8 ? 3e-2 : 5e-3;  // a near-tie can round to the neighbouring e4m3 code
  report(eq < 5e-3 && ekv < tolKv && untouched,
         std::string("prefill qkv + rope + paged KV ") + (fp8 ? "fp8" : "bf16") + (kvFp8 ? " kv-fp8" : "") + " M " + std::to_string(M) +
             " heads " + std::to_string(nh) + "/" + std::to_string(nkv) + " hd " + std::to_string(hd),
         fmt("q err %.2e", eq) + fmt(" kv err %.2e", ekv) + (untouched ? "" : " WROTE A PADDING ROW"));
}

// ---- prefill_gemm.cu: AutoAWQ W4 (float32 out) ----
static void testW4(int M, int N, int K, int G) {
  std::uniform_int_distribution<uint32_t> u32;
  std::uniform_int_distribution<int> expo(10, 13), mant(0, 1023);
  const int words = N / 8, groups = K / G;
  std::vector<int32_t> qweight(size_t(K) * words), qzeros(size_t(groups) * words);
  for (auto& v : qweight) v = int32_t(u32(rng));
  for (auto& v : qzeros) v = int32_t(u32(rng));
  std::vector<uint16_t> scales16(size_t(groups) * N);
  std::vector<float> scales(scales16.size());
  for (size_t i = 0; i < scales16.size(); i++) {
    scales16[i] = uint16_t((expo(rng) << 10) | mant(rng));  // 2^-5 .. 2^-1
    scales[i] = f16ToFloat(scales16[i]);
  }
  auto x = randomBf16(size_t(M) * K, 1.0f);
  cpu::WeightView view;
  view.type = cpu::WType::W4;
  view.data = qweight.data();
  view.zeros = qzeros.data();
  view.scales = scales.data();
  view.groupSize = G;
  view.rows = N;
  view.cols = K;
  std::vector<float> ref(size_t(M) * N);
  cpu::linear(ref.data(), widen(x).data(), M, view);
  Dev<int32_t> dq(qweight), dz(qzeros);
  Dev<uint16_t> ds(scales16), dx(x);
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
  Dev<uint16_t> dk(kvFp8 ? std::vector<uint16_t>((cacheElems + 1) / 2) : k16), dv(kvFp8 ? std::vector<uint16_t>((cacheElems + 1) / 2) : v16);
  if (kvFp8) {
    cudaMemcpy(dk.p, k8.data(), cacheElems, cudaMemcpyHostToDevice);
    cudaMemcpy(dv.p, v8.data(), cacheElems, cudaMemcpyHostToDevice);
  }
  Dev<uint16_t> dq(q), out(size_t(rows) * nh * hd);
  Dev<int32_t> dt(tables), doff(tableOffset), dctx(ctxLen), dtiles(tiles);
  out.poison();
  cuda::AttentionArgs a;
  a.q = dq.p;
  a.kCache = dk.p;
  a.vCache = dv.p;
  a.blockTables = dt.p;
  a.tableOffset = doff.p;
  a.ctxLen = dctx.p;
  a.out = out.p;
  a.rows = rows;
  a.numHeads = nh;
  a.numKvHeads = nkv;
  a.headDim = hd;
  a.blockSize = bs;
  a.kvFp8 = kvFp8;
  CHECK_CUDA(cuda::prefillAttention(a, dtiles.p, numTiles, 0));
  CHECK_CUDA(cudaDeviceSynchronize());
  // The CPU reference reads the cache as [slot][kvHead·hd] float.
  const int kvDim = nkv * hd;
  std::vector<float> kf(size_t(numBlocks) * bs * kvDim), vf(kf.size());
  for (int b = 0; b < numBlocks; b++)
    for (int h = 0; h < nkv; h++)
      for (int sl = 0; sl < bs; sl++)
        for (int d = 0; d < hd; d++) {
          const size_t dev = ((size_t(b) * nkv + h) * bs + sl) * hd + d, ref = (size_t(b) * bs + sl) * kvDim + h * hd + d;
          kf[ref] = kvFp8 ? fp8e4m3ToFloat(k8[dev]) : bf16ToFloat(k16[dev]);
          vf[ref] = kvFp8 ? fp8e4m3ToFloat(v8[dev]) : bf16ToFloat(v16[dev]);
        }
  std::vector<float> ref(size_t(rows) * nh * hd), qf = widen(q);
  std::vector<double> scratch;
  for (int r = 0; r < rows; r++)
    cpu::pagedAttention(ref.data() + size_t(r) * nh * hd, qf.data() + size_t(r) * nh * hd, kf.data(), vf.data(), tables.data() + tableOffset[r],
                        bs, ctxLen[r] - 1, nh, nkv, hd, scratch);
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
