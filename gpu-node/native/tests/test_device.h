// Shared by kernel_tests, prefill_kernel_tests and quant_kernel_tests: random inputs, device buffers,
// test weights (bf16 or FP8, fused row orders, AWQ int4) with their CPU views, and the CPU references
// and launch arguments the decode and prefill kernels of one kind share. Each test program seeds `rng`
// itself.
#pragma once

#include <cstring>
#include <numeric>
#include <random>

#include "../kernels/cpu/cpu_kernels.h"
#include "kernels.h"
#include "seventy/engine.h"
#include "seventy/numerics.h"
#include "test_util.h"

inline std::mt19937_64 rng;

namespace seventy {

inline std::vector<uint16_t> randomBf16(size_t n, float amp) {
  std::uniform_real_distribution<float> d(-amp, amp);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = floatToBf16(d(rng));
  return v;
}
inline std::vector<float> widen(const std::vector<uint16_t>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); i++) f[i] = bf16ToFloat(v[i]);
  return f;
}

template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) { cudaMalloc(&p, std::max<size_t>(count, 1) * sizeof(T)); }
  Dev(const std::vector<T>& h) : Dev(h.size()) { cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice); }
  ~Dev() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> h(n);
    cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
    return h;
  }
  void poison() { cudaMemset(p, 0xff, n * sizeof(T)); }  // bf16 0xffff and f32 0xffffffff are NaN
};

inline std::string fmt(const char* f, double v) {
  char b[64];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// Weight [N, K] as bf16 or fp8 (quantized on the device, checked bit-exact against the CPU quantizer).
struct TestWeight {
  std::vector<uint16_t> bf16;
  std::vector<uint8_t> q;
  std::vector<float> scales;
  cuda::LinearWeight dev;
  cpu::WeightView view;
  uint16_t* dBf16 = nullptr;
  uint8_t* dQ = nullptr;
  float* dScales = nullptr;
  bool quantOk = true;
  TestWeight(int N, int K, bool fp8, const std::vector<uint16_t>* rows = nullptr) {
    bf16 = rows ? *rows : randomBf16(size_t(N) * K, 0.08f);
    cudaMalloc(&dBf16, bf16.size() * 2);
    cudaMemcpy(dBf16, bf16.data(), bf16.size() * 2, cudaMemcpyHostToDevice);
    dev = {cuda::WFormat::BF16, dBf16, nullptr, N, K};
    view = {cpu::WType::BF16, bf16.data(), nullptr, N, K};
    if (fp8) {
      cudaMalloc(&dQ, bf16.size());
      cudaMalloc(&dScales, size_t(N) * 4);
      cuda::quantizeFp8Rows(dBf16, N, K, dQ, dScales, 0);
      q.resize(bf16.size());
      scales.resize(N);
      cudaMemcpy(q.data(), dQ, q.size(), cudaMemcpyDeviceToHost);
      cudaMemcpy(scales.data(), dScales, size_t(N) * 4, cudaMemcpyDeviceToHost);
      for (int r = 0; r < N && quantOk; r++) {
        float amax = 0;
        for (int k = 0; k < K; k++) amax = std::fmax(amax, std::fabs(bf16ToFloat(bf16[size_t(r) * K + k])));
        const float s = amax > 0 ? amax / kFp8Max : 1.0f;
        if (s != scales[r]) quantOk = false;
        for (int k = 0; k < K && quantOk; k++)
          if (q[size_t(r) * K + k] != floatToFp8e4m3(bf16ToFloat(bf16[size_t(r) * K + k]) / s)) quantOk = false;
      }
      dev = {cuda::WFormat::FP8, dQ, dScales, N, K};
      view = {cpu::WType::FP8, q.data(), scales.data(), N, K};
    }
  }
  TestWeight(int N, int K, bool fp8, const std::vector<uint16_t>& rows) : TestWeight(N, K, fp8, &rows) {}
  TestWeight(const TestWeight&) = delete;
  TestWeight& operator=(const TestWeight&) = delete;
  ~TestWeight() {
    cudaFree(dBf16);
    cudaFree(dQ);
    cudaFree(dScales);
  }
};

// A fused weight: the same random rows [order.size(), K] as the device keeps them (`fused`: row i is
// checkpoint row order[i], as gateUpRowOrder and qkvRowOrder give it) and in checkpoint order for the
// CPU reference (`plain`).
struct FusedWeight {
  TestWeight fused, plain;
  FusedWeight(int K, bool fp8, const std::vector<int32_t>& order) : FusedWeight(randomBf16(order.size() * K, 0.08f), K, fp8, order) {}

 private:
  static std::vector<uint16_t> reorder(const std::vector<uint16_t>& rows, int K, const std::vector<int32_t>& order) {
    std::vector<uint16_t> out(rows.size());
    for (size_t i = 0; i < order.size(); i++) std::copy_n(rows.begin() + size_t(order[i]) * K, K, out.begin() + i * K);
    return out;
  }
  FusedWeight(const std::vector<uint16_t>& rows, int K, bool fp8, const std::vector<int32_t>& order)
      : fused(int(order.size()), K, fp8, reorder(rows, K, order)), plain(int(order.size()), K, fp8, rows) {}
};
inline std::vector<int32_t> gateUpOrder(int I) {
  std::vector<int32_t> order(2 * I);
  cuda::gateUpRowOrder(I, order.data());
  return order;
}
inline std::vector<int32_t> qkvOrder(int nh, int nkv, int hd) {
  std::vector<int32_t> order((nh + 2 * nkv) * hd);
  cuda::qkvRowOrder(nh, nkv, hd, order.data());
  return order;
}

// An AutoAWQ GEMM int4 weight [N, K] in groups of G: random packed nibbles and zero points, fp16 scales
// in 2^-5 .. 2^-1, and its CPU view.
struct TestW4 {
  std::vector<int32_t> qweight, qzeros;
  std::vector<uint16_t> scales16;
  std::vector<float> scales;
  cpu::WeightView view;
  TestW4(int N, int K, int G) : qweight(size_t(K) * (N / 8)), qzeros(size_t(K / G) * (N / 8)), scales16(size_t(K / G) * N), scales(scales16.size()) {
    std::uniform_int_distribution<uint32_t> u32;
    std::uniform_int_distribution<int> expo(10, 13), mant(0, 1023);
    for (auto& v : qweight) v = int32_t(u32(rng));
    for (auto& v : qzeros) v = int32_t(u32(rng));
    for (size_t i = 0; i < scales16.size(); i++) {
      scales16[i] = uint16_t((expo(rng) << 10) | mant(rng));
      scales[i] = f16ToFloat(scales16[i]);
    }
    view.type = cpu::WType::W4;
    view.data = qweight.data();
    view.zeros = qzeros.data();
    view.scales = scales.data();
    view.groupSize = G;
    view.rows = N;
    view.cols = K;
  }
  TestW4(const TestW4&) = delete;
  TestW4& operator=(const TestW4&) = delete;
};

// ---- CPU references ----

// x·Wᵀ: [M, w.rows].
inline std::vector<float> linearRef(const std::vector<float>& x, int M, const cpu::WeightView& w) {
  std::vector<float> y(size_t(M) * w.rows);
  cpu::linear(y.data(), x.data(), M, w);
  return y;
}

// gate/up + SwiGLU: silu(x·Wgᵀ) · (x·Wuᵀ), [M, I], from the gate rows then the up rows (checkpoint order).
inline std::vector<float> swigluRef(const std::vector<float>& x, int M, int I, const cpu::WeightView& gateUp) {
  const std::vector<float> both = linearRef(x, M, gateUp);
  std::vector<float> ref(size_t(M) * I), up(size_t(M) * I);
  for (int m = 0; m < M; m++)
    for (int j = 0; j < I; j++) {
      ref[size_t(m) * I + j] = both[size_t(m) * 2 * I + j];
      up[size_t(m) * I + j] = both[size_t(m) * 2 * I + I + j];
    }
  cpu::siluMul(ref.data(), up.data(), int64_t(M) * I);
  return ref;
}

// Paged attention, row r's query over the first ctxLen[r] positions of its block table (tables +
// offsets[r]), K and V given as float in the device layout [block][kvHead][slot in block][hd].
inline std::vector<float> pagedAttentionRef(const std::vector<float>& q, const std::vector<float>& kDev, const std::vector<float>& vDev,
                                            const std::vector<int32_t>& tables, const std::vector<int32_t>& offsets,
                                            const std::vector<int32_t>& ctxLen, int nh, int nkv, int hd, int bs) {
  // The CPU reference reads the cache as [slot][kvHead·hd] float.
  const int kvDim = nkv * hd, numBlocks = int(kDev.size() / (size_t(bs) * kvDim));
  std::vector<float> kf(size_t(numBlocks) * bs * kvDim), vf(kf.size());
  for (int b = 0; b < numBlocks; b++)
    for (int h = 0; h < nkv; h++)
      for (int s = 0; s < bs; s++)
        for (int d = 0; d < hd; d++) {
          const size_t dev = ((size_t(b) * nkv + h) * bs + s) * hd + d, ref = (size_t(b) * bs + s) * kvDim + h * hd + d;
          kf[ref] = kDev[dev];
          vf[ref] = vDev[dev];
        }
  const int rows = int(ctxLen.size());
  std::vector<float> ref(size_t(rows) * nh * hd);
  std::vector<double> scratch;
  for (int r = 0; r < rows; r++)
    cpu::pagedAttention(ref.data() + size_t(r) * nh * hd, q.data() + size_t(r) * nh * hd, kf.data(), vf.data(), tables.data() + offsets[r], bs,
                        ctxLen[r] - 1, nh, nkv, hd, scratch);
  return ref;
}

// ---- launches ----

// A linear kernel with float32 and bf16 outputs (gemv.cu, prefill_gemm.cu) against cpu::linear: M random
// rows through `w` into a poisoned output of the type `f32out` picks. `ok`: within the bf16 tolerance.
using LinearF32Out = cudaError_t (*)(const uint16_t*, int, const cuda::LinearWeight&, float*, cudaStream_t);
using LinearBf16Out = cudaError_t (*)(const uint16_t*, int, const cuda::LinearWeight&, uint16_t*, cudaStream_t);
struct LinearCheck {
  double err = NAN;
  bool ok = false;
};
inline cudaError_t checkLinear(LinearF32Out f32, LinearBf16Out bf16, const TestWeight& w, int M, bool f32out, LinearCheck& check) {
  const auto x = randomBf16(size_t(M) * w.view.cols, 1.0f);
  const size_t outElems = size_t(M) * w.view.rows;
  Dev<uint16_t> dx(x);
  std::vector<float> got;
  cudaError_t e;
  if (f32out) {
    Dev<float> y(outElems);
    y.poison();
    if ((e = f32(dx.p, M, w.dev, y.p, 0)) != cudaSuccess || (e = cudaDeviceSynchronize()) != cudaSuccess) return e;
    got = y.get();
  } else {
    Dev<uint16_t> y(outElems);
    y.poison();
    if ((e = bf16(dx.p, M, w.dev, y.p, 0)) != cudaSuccess || (e = cudaDeviceSynchronize()) != cudaSuccess) return e;
    got = widen(y.get());
  }
  check.err = relErr(got, linearRef(widen(x), M, w.view));
  check.ok = check.err < (f32out ? 1e-5 : 4e-3);  // f32 out: only summation order; bf16 out: one rounding
  return cudaSuccess;
}

// gate/up + SwiGLU (gemv.cu, prefill_gemm.cu) against swigluRef: M random rows through a random fused
// [2I, K] weight, launch(x, M, weight, y) into a poisoned [M, I] output; the relative error in `err`.
template <class Launch>
inline cudaError_t checkSwiglu(const Launch& launch, int M, int I, int K, bool fp8, double& err) {
  FusedWeight w(K, fp8, gateUpOrder(I));
  const auto x = randomBf16(size_t(M) * K, 1.0f);
  Dev<uint16_t> dx(x), y(size_t(M) * I);
  y.poison();
  cudaError_t e;
  if ((e = launch(dx.p, M, w.fused.dev, y.p)) != cudaSuccess || (e = cudaDeviceSynchronize()) != cudaSuccess) return e;
  err = relErr(widen(y.get()), swigluRef(widen(x), M, I, w.plain.view));
  return cudaSuccess;
}

// A QKV + RoPE + paged KV write of M rows (Llama 3.1's RoPE): positions anywhere in 128k, distinct KV
// slots shuffled over numBlocks pages of bs (row padRow a padding row: slot -1), and `args` over
// device copies of them, a poisoned q output [M, nh·hd] and poisoned bf16 K/V caches (an FP8 cache
// uses the first half of their bytes).
struct QkvRopeCase {
  struct Rows {
    std::vector<int32_t> pos, slots, allSlots;
  };
  // What the launch wrote, against the CPU: q's relative error, that of K/V at every written slot, and
  // the K cache as read back.
  struct Outcome {
    double eq, ekv;
    std::vector<uint16_t> kCache;
  };

  const int M, nh, nkv, hd, bs, numBlocks;
  const std::vector<int32_t> pos, slots, allSlots;
  const std::vector<float> inv;
  Dev<int32_t> dpos, dslots;
  Dev<float> dinv;
  Dev<uint16_t> q, kc, vc;
  cuda::QkvRopeArgs args;

  QkvRopeCase(int M, int nh, int nkv, int hd, int bs, int numBlocks, int padRow)
      : QkvRopeCase(M, nh, nkv, hd, bs, numBlocks, drawRows(M, numBlocks * bs, padRow)) {}

  // `all` = x·Wqkvᵀ [M, (nh + 2·nkv)·hd] from the CPU; RoPE is applied here to its q and k heads.
  // kvFp8: the cache holds e4m3 bytes, and the reference is rounded to e4m3 as the kernel rounds the
  // same float32 sum.
  Outcome compare(std::vector<float> all, bool kvFp8) const {
    const int rowsQkv = (nh + 2 * nkv) * hd;
    std::vector<float> refQ(size_t(M) * nh * hd), gotQ = widen(q.get()), refKV, gotKV;
    const auto hk = kc.get(), hv = vc.get();
    const uint8_t *bk = reinterpret_cast<const uint8_t*>(hk.data()), *bv = reinterpret_cast<const uint8_t*>(hv.data());
    auto stored = [kvFp8](float v) { return kvFp8 ? fp8e4m3ToFloat(floatToFp8e4m3(v)) : v; };
    for (int m = 0; m < M; m++) {
      float* row = all.data() + size_t(m) * rowsQkv;
      cpu::applyRope(row, nh + nkv, hd, inv.data(), pos[m]);  // q heads then k heads, v untouched
      std::copy_n(row, nh * hd, refQ.begin() + size_t(m) * nh * hd);
      const int s = slots[m];
      if (s < 0) continue;
      for (int h = 0; h < nkv; h++)
        for (int d = 0; d < hd; d++) {
          const size_t at = ((size_t(s / bs) * nkv + h) * bs + s % bs) * hd + d;
          refKV.push_back(stored(row[(nh + h) * hd + d]));
          refKV.push_back(stored(row[(nh + nkv + h) * hd + d]));
          gotKV.push_back(kvFp8 ? fp8e4m3ToFloat(bk[at]) : bf16ToFloat(hk[at]));
          gotKV.push_back(kvFp8 ? fp8e4m3ToFloat(bv[at]) : bf16ToFloat(hv[at]));
        }
    }
    return {relErr(gotQ, refQ), relErr(gotKV, refKV), hk};
  }

  // The first K element of `slot` (head 0, dim 0) in the read-back cache still holds the poison.
  bool untouched(const std::vector<uint16_t>& kCache, int slot, bool kvFp8) const {
    const size_t at = ((size_t(slot / bs) * nkv) * bs + slot % bs) * hd;
    return kvFp8 ? reinterpret_cast<const uint8_t*>(kCache.data())[at] == 0xff : kCache[at] == 0xffff;
  }

 private:
  static Rows drawRows(int M, int numSlots, int padRow) {
    Rows r{std::vector<int32_t>(M), std::vector<int32_t>(M), std::vector<int32_t>(numSlots)};
    std::iota(r.allSlots.begin(), r.allSlots.end(), 0);
    std::shuffle(r.allSlots.begin(), r.allSlots.end(), rng);
    for (int m = 0; m < M; m++) {
      r.pos[m] = int(rng() % 131072);
      r.slots[m] = m == padRow ? -1 : r.allSlots[size_t(m)];
    }
    return r;
  }
  static std::vector<float> llama3InvFreq(int hd) {
    const ModelConfig c = llama70BConfig();
    return cpu::ropeInvFreq(hd, c.ropeTheta, c.rope);
  }
  QkvRopeCase(int M, int nh, int nkv, int hd, int bs, int numBlocks, Rows r)
      : M(M), nh(nh), nkv(nkv), hd(hd), bs(bs), numBlocks(numBlocks), pos(std::move(r.pos)), slots(std::move(r.slots)),
        allSlots(std::move(r.allSlots)), inv(llama3InvFreq(hd)), dpos(pos), dslots(slots), dinv(inv), q(size_t(M) * nh * hd),
        kc(size_t(numBlocks) * nkv * bs * hd), vc(kc.n) {
    q.poison();
    kc.poison();
    vc.poison();
    args.positions = dpos.p;
    args.slots = dslots.p;
    args.invFreq = dinv.p;
    args.q = q.p;
    args.kCache = kc.p;
    args.vCache = vc.p;
    args.numHeads = nh;
    args.numKvHeads = nkv;
    args.headDim = hd;
    args.blockSize = bs;
  }
};

// e4m3 cache bytes as the kernels take a cache (uint16_t*, an FP8 cache in the first half of the bytes).
inline std::vector<uint16_t> fp8Cache(const std::vector<uint8_t>& bytes) {
  std::vector<uint16_t> packed((bytes.size() + 1) / 2);
  std::memcpy(packed.data(), bytes.data(), bytes.size());
  return packed;
}

// Paged attention's arguments over these buffers: [rows, nh·hd] queries and outputs, bf16 caches of
// pages of bs, one split.
inline cuda::AttentionArgs attentionArgs(const Dev<uint16_t>& q, const Dev<uint16_t>& k, const Dev<uint16_t>& v, const Dev<int32_t>& tables,
                                         const Dev<int32_t>& offsets, const Dev<int32_t>& ctxLen, Dev<uint16_t>& out, int nh, int nkv, int hd, int bs) {
  cuda::AttentionArgs a;
  a.q = q.p;
  a.kCache = k.p;
  a.vCache = v.p;
  a.blockTables = tables.p;
  a.tableOffset = offsets.p;
  a.ctxLen = ctxLen.p;
  a.out = out.p;
  a.rows = int(ctxLen.n);
  a.numHeads = nh;
  a.numKvHeads = nkv;
  a.headDim = hd;
  a.blockSize = bs;
  return a;
}

}  // namespace seventy
