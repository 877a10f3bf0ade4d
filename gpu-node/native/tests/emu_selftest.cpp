// emu_selftest: the CPU emulator (emu/) on its own. The emulated PTX instructions against plain
// arithmetic, the warp collectives against their definitions, and every check the emulator makes, each
// shown to fire on a deliberately broken kernel (run in a child process: a failed check exits with
// emu::kCheckFailedExit and a message naming kernel, block and thread) and to stay quiet on the fixed one.
// Prints one line per check and "N passed, M failed" last; exit status 1 on any failure.
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "seventy/numerics.h"

static int passed = 0, failed = 0;

static void report(bool ok, const std::string& name, const std::string& detail = "") {
  std::printf("%s %-64s %s\n", ok ? "PASS" : "FAIL", name.c_str(), detail.c_str());
  (ok ? passed : failed)++;
}

// Runs fn in a child; returns its exit status and what it wrote to stderr.
static int inChild(const std::function<void()>& fn, std::string& err) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 2);
    fn();
    cudaDeviceSynchronize();
    _exit(0);
  }
  close(fds[1]);
  char buf[4096];
  ssize_t n;
  err.clear();
  while ((n = read(fds[0], buf, sizeof buf)) > 0) err.append(buf, size_t(n));
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

// The check must fire (status 86, message containing `what`) on `bad` and stay quiet on `good`.
static void expectCheck(const std::string& name, const char* what, const std::function<void()>& bad, const std::function<void()>& good) {
  std::string errBad, errGood;
  const int sb = inChild(bad, errBad), sg = inChild(good, errGood);
  const bool fired = sb == emu::kCheckFailedExit && errBad.find(what) != std::string::npos;
  const bool quiet = sg == 0;
  // The message's second line says what was wrong (the first names kernel, block and thread).
  std::string what2;
  const size_t at = errBad.find("FAILED in ");
  if (at != std::string::npos) {
    const size_t l2 = errBad.find('\n', at) + 1;
    what2 = errBad.substr(l2, errBad.find('\n', l2) - l2);
    what2.erase(0, what2.find_first_not_of(' '));
  }
  report(fired && quiet, "check: " + name,
         (fired ? "fires" : "DID NOT FIRE (status " + std::to_string(sb) + ")") + std::string(quiet ? ", quiet when fixed" : ", FALSE ALARM: " + errGood));
  if (fired) std::printf("     %s\n", what2.substr(0, 150).c_str());
  if (!fired || !quiet) std::fprintf(stderr, "%s\n%s\n", errBad.c_str(), errGood.c_str());
}

template <class T>
static T* devAlloc(size_t n) {
  T* p = nullptr;
  cudaMalloc(&p, n * sizeof(T));
  return p;
}

// ---------------------------------------------------------------------------------------------
// mma.m16n8k16 bf16 against a plain product. The fragments are distributed register by register as
// the PTX ISA's figures draw them (lane = 4·groupID + threadID_in_group):
//   a reg 0: A[g][2t..2t+1]   reg 1: A[g+8][2t..2t+1]   reg 2: A[g][2t+8..2t+9]   reg 3: A[g+8][2t+8..2t+9]
//   b reg 0: B[2t..2t+1][g]   reg 1: B[2t+8..2t+9][g]
//   c/d:     C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1]
__global__ void mmaKernel(const uint16_t* A, const uint16_t* B, const float* C, float* D) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  auto pair = [](uint16_t lo, uint16_t hi) { return uint32_t(lo) | uint32_t(hi) << 16; };
  const uint32_t a[4] = {pair(A[g * 16 + 2 * t], A[g * 16 + 2 * t + 1]), pair(A[(g + 8) * 16 + 2 * t], A[(g + 8) * 16 + 2 * t + 1]),
                         pair(A[g * 16 + 2 * t + 8], A[g * 16 + 2 * t + 9]), pair(A[(g + 8) * 16 + 2 * t + 8], A[(g + 8) * 16 + 2 * t + 9])};
  const uint32_t b0 = pair(B[(2 * t) * 8 + g], B[(2 * t + 1) * 8 + g]), b1 = pair(B[(2 * t + 8) * 8 + g], B[(2 * t + 9) * 8 + g]);
  float c[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
  emu::ptx::mma_m16n8k16_row_col_f32_bf16_bf16_f32(c, a, b0, b1, EMU_SITE_);
  D[g * 8 + 2 * t] = c[0];
  D[g * 8 + 2 * t + 1] = c[1];
  D[(g + 8) * 8 + 2 * t] = c[2];
  D[(g + 8) * 8 + 2 * t + 1] = c[3];
}

static void testMma() {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-2, 2);
  std::vector<uint16_t> A(256), B(128);
  std::vector<float> C(128), D(128);
  double worst = 0;
  for (int trial = 0; trial < 20; trial++) {
    for (auto& x : A) x = seventy::floatToBf16(u(rng));
    for (auto& x : B) x = seventy::floatToBf16(u(rng));
    for (auto& x : C) x = u(rng);
    uint16_t *dA = devAlloc<uint16_t>(256), *dB = devAlloc<uint16_t>(128);
    float *dC = devAlloc<float>(128), *dD = devAlloc<float>(128);
    cudaMemcpy(dA, A.data(), 512, cudaMemcpyHostToDevice);
    cudaMemcpy(dB, B.data(), 256, cudaMemcpyHostToDevice);
    cudaMemcpy(dC, C.data(), 512, cudaMemcpyHostToDevice);
    SEVENTY_LAUNCH(1, 32, 0, 0, mmaKernel)(dA, dB, dC, dD);
    cudaMemcpy(D.data(), dD, 512, cudaMemcpyDeviceToHost);
    for (int i = 0; i < 16; i++)
      for (int j = 0; j < 8; j++) {
        double ref = C[size_t(i * 8 + j)];
        for (int k = 0; k < 16; k++) ref += double(seventy::bf16ToFloat(A[size_t(i * 16 + k)])) * seventy::bf16ToFloat(B[size_t(k * 8 + j)]);
        worst = std::max(worst, std::fabs(ref - D[size_t(i * 8 + j)]) / (std::fabs(ref) + 1e-3));
      }
    cudaFree(dA), cudaFree(dB), cudaFree(dC), cudaFree(dD);
  }
  report(worst < 1e-6, "ptx mma.sync.m16n8k16.row.col.f32.bf16.bf16.f32 == A·B + C", "max rel err " + std::to_string(worst));
}

// ---------------------------------------------------------------------------------------------
// ldmatrix (.x1/.x2/.x4, with and without .trans) against the PTX ISA's fragment table, element by
// element: matrix i's rows live in shared memory in a scrambled order (row r at slot (5r + 3i) % 8 of
// its matrix, with the matrices in reverse order) so only the lane → row-address mapping finds them;
// the expected register of lane (g, t) is written from the table, not from the emulator's code.
template <int Num, bool Trans>
__global__ void ldmatrixKernel(uint32_t* out) {
  __shared__ uint16_t s[4][8][8];
  const int lane = threadIdx.x;
  for (int e = lane; e < 256; e += 32) {
    const int i = e / 64, slot = e / 8 % 8, c = e % 8;
    const int r = (slot * 5 + (8 - 3 * i % 8) * 5) % 8;  // inverse of slot = (5r + 3i) % 8 (5·5 ≡ 1 mod 8)
    s[3 - i][slot][c] = uint16_t(i * 64 + r * 8 + c);
  }
  __syncthreads();
  const int i = lane / 8 % Num, r = lane % 8;
  uint32_t d[Num];
  emu::ptx::ldmatrix_m8n8_b16<Num, Trans>(d, &s[3 - i][(5 * r + 3 * i) % 8][0], EMU_SITE_);
  for (int j = 0; j < Num; j++) out[lane * 4 + j] = d[j];
}

template <int Num, bool Trans>
static int ldmatrixWrong() {
  uint32_t* d = devAlloc<uint32_t>(128);
  SEVENTY_LAUNCH(1, 32, 0, 0, ldmatrixKernel<Num, Trans>)(d);
  std::vector<uint32_t> h(128);
  cudaMemcpy(h.data(), d, 512, cudaMemcpyDeviceToHost);
  cudaFree(d);
  int bad = 0;
  for (int lane = 0; lane < 32; lane++) {
    const int g = lane / 4, t = lane % 4;
    for (int i = 0; i < Num; i++) {
      // value i·64 + row·8 + column; .trans hands out column g, rows 2t and 2t+1.
      const uint32_t lo = Trans ? i * 64 + (2 * t) * 8 + g : i * 64 + g * 8 + 2 * t;
      const uint32_t hi = Trans ? i * 64 + (2 * t + 1) * 8 + g : i * 64 + g * 8 + 2 * t + 1;
      bad += h[size_t(lane * 4 + i)] != (lo | hi << 16);
    }
  }
  return bad;
}

// ldmatrix feeding mma: A (16×16, row-major in shared memory) through .x4, B (16×8, stored as B^T:
// 8 rows of 16 k) through .x2, and B stored k-major (16 rows of 8 n) through .x2.trans; both products
// must equal the plain one. This is how the prefill kernels use the pair.
__global__ void ldmatrixMmaKernel(const uint16_t* A, const uint16_t* Bt, const uint16_t* Bk, float* D) {
  __shared__ __align__(16) uint16_t sA[16][16], sBt[8][16], sBk[16][8];
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  for (int e = lane; e < 256; e += 32) sA[e / 16][e % 16] = A[e];
  for (int e = lane; e < 128; e += 32) sBt[e / 16][e % 16] = Bt[e], sBk[e / 8][e % 8] = Bk[e];
  __syncthreads();
  uint32_t a[4], b[2], bk[2];
  // matrices: rows 0-7/k 0-7, rows 8-15/k 0-7, rows 0-7/k 8-15, rows 8-15/k 8-15 (a0..a3's order)
  emu::ptx::ldmatrix_m8n8_b16<4, false>(a, &sA[lane % 16][(lane / 16) * 8], EMU_SITE_);
  emu::ptx::ldmatrix_m8n8_b16<2, false>(b, &sBt[lane % 8][(lane / 8 % 2) * 8], EMU_SITE_);
  emu::ptx::ldmatrix_m8n8_b16<2, true>(bk, &sBk[lane % 16][0], EMU_SITE_);
  float c[4] = {0, 0, 0, 0}, c2[4] = {0, 0, 0, 0};
  emu::ptx::mma_m16n8k16_row_col_f32_bf16_bf16_f32(c, a, b[0], b[1], EMU_SITE_);
  emu::ptx::mma_m16n8k16_row_col_f32_bf16_bf16_f32(c2, a, bk[0], bk[1], EMU_SITE_);
  for (int j = 0; j < 4; j++) {
    D[(g + (j >> 1) * 8) * 8 + 2 * t + (j & 1)] = c[j];
    D[128 + (g + (j >> 1) * 8) * 8 + 2 * t + (j & 1)] = c2[j];
  }
}

__global__ void ldmatrixGlobalKernel(const uint16_t* p, uint32_t* out, bool global) {
  __shared__ __align__(16) uint16_t s[8][8];
  for (int e = threadIdx.x; e < 64; e += 32) s[e / 8][e % 8] = p[e];
  __syncthreads();
  uint32_t d[1];
  emu::ptx::ldmatrix_m8n8_b16<1, false>(d, global ? p + (threadIdx.x % 8) * 8 : &s[threadIdx.x % 8][0], EMU_SITE_);
  out[threadIdx.x] = d[0];
}

__global__ void ldmatrixUninitKernel(uint32_t* out, bool skipRow) {
  __shared__ __align__(16) uint16_t s[8][8];
  for (int e = threadIdx.x; e < 64; e += 32)
    if (!(skipRow && e / 8 == 6)) s[e / 8][e % 8] = uint16_t(e);
  __syncthreads();
  uint32_t d[1];
  emu::ptx::ldmatrix_m8n8_b16<1, true>(d, &s[threadIdx.x % 8][0], EMU_SITE_);
  out[threadIdx.x] = d[0];
}

static void testLdmatrix() {
  const int w1 = ldmatrixWrong<1, false>(), w2 = ldmatrixWrong<2, false>(), w4 = ldmatrixWrong<4, false>();
  const int t1 = ldmatrixWrong<1, true>(), t2 = ldmatrixWrong<2, true>(), t4 = ldmatrixWrong<4, true>();
  report(w1 + w2 + w4 == 0, "ptx ldmatrix.m8n8.x1/.x2/.x4.b16 == the fragment table",
         std::to_string(w1) + "/" + std::to_string(w2) + "/" + std::to_string(w4) + " wrong registers");
  report(t1 + t2 + t4 == 0, "ptx ldmatrix.m8n8.x1/.x2/.x4.trans.b16 == the fragment table",
         std::to_string(t1) + "/" + std::to_string(t2) + "/" + std::to_string(t4) + " wrong registers");

  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-2, 2);
  std::vector<uint16_t> A(256), Bt(128), Bk(128);
  for (auto& x : A) x = seventy::floatToBf16(u(rng));
  for (int n = 0; n < 8; n++)
    for (int k = 0; k < 16; k++) Bt[size_t(n * 16 + k)] = Bk[size_t(k * 8 + n)] = seventy::floatToBf16(u(rng));
  uint16_t *dA = devAlloc<uint16_t>(256), *dBt = devAlloc<uint16_t>(128), *dBk = devAlloc<uint16_t>(128);
  float* dD = devAlloc<float>(256);
  cudaMemcpy(dA, A.data(), 512, cudaMemcpyHostToDevice);
  cudaMemcpy(dBt, Bt.data(), 256, cudaMemcpyHostToDevice);
  cudaMemcpy(dBk, Bk.data(), 256, cudaMemcpyHostToDevice);
  SEVENTY_LAUNCH(1, 32, 0, 0, ldmatrixMmaKernel)(dA, dBt, dBk, dD);
  std::vector<float> D(256);
  cudaMemcpy(D.data(), dD, 1024, cudaMemcpyDeviceToHost);
  double worst = 0;
  for (int m = 0; m < 16; m++)
    for (int n = 0; n < 8; n++) {
      double ref = 0;
      for (int k = 0; k < 16; k++) ref += double(seventy::bf16ToFloat(A[size_t(m * 16 + k)])) * seventy::bf16ToFloat(Bt[size_t(n * 16 + k)]);
      for (int v = 0; v < 2; v++) worst = std::max(worst, std::fabs(ref - D[size_t(v * 128 + m * 8 + n)]) / (std::fabs(ref) + 1e-3));
    }
  cudaFree(dA), cudaFree(dBt), cudaFree(dBk), cudaFree(dD);
  report(worst < 1e-6, "ldmatrix .x4 (A), .x2 (B^T) and .x2.trans (B) feeding mma.m16n8k16 == A·B", "max rel err " + std::to_string(worst));

  expectCheck("ldmatrix from a global (not shared) address", "not in shared memory", [] {
    uint16_t* p = devAlloc<uint16_t>(64);
    cudaMemset(p, 0, 128);
    SEVENTY_LAUNCH(1, 32, 0, 0, ldmatrixGlobalKernel)(p, devAlloc<uint32_t>(32), true);
  }, [] {
    uint16_t* p = devAlloc<uint16_t>(64);
    cudaMemset(p, 0, 128);
    SEVENTY_LAUNCH(1, 32, 0, 0, ldmatrixGlobalKernel)(p, devAlloc<uint32_t>(32), false);
  });
  expectCheck("ldmatrix of a shared row no thread wrote", "initcheck", [] {
    SEVENTY_LAUNCH(1, 32, 0, 0, ldmatrixUninitKernel)(devAlloc<uint32_t>(32), true);
  }, [] {
    SEVENTY_LAUNCH(1, 32, 0, 0, ldmatrixUninitKernel)(devAlloc<uint32_t>(32), false);
  });
}

static void testConversions() {
  int bad = 0;
  for (int v = 0; v < 256; v++) {
    const float ref = seventy::fp8e4m3ToFloat(uint8_t(v));
    const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t(v | (255 - v) << 8), __NV_E4M3);
    const float lo = seventy::f16ToFloat(h.x), hi = seventy::f16ToFloat(h.y);
    const float refHi = seventy::fp8e4m3ToFloat(uint8_t(255 - v));
    auto same = [](float a, float b) { return (std::isnan(a) && std::isnan(b)) || (a == b && std::signbit(a) == std::signbit(b)); };
    if (!same(lo, ref) || !same(hi, refHi)) bad++;
  }
  report(bad == 0, "ptx cvt.rn.f16x2.e4m3x2: all 256 codes, byte order", std::to_string(bad) + " wrong");
  int badQ = 0;
  {
    std::mt19937 r2(5);
    std::uniform_real_distribution<float> lg(-14.0f, 10.0f);
    std::vector<float> xs = {0.0f, -0.0f, 448.0f, 449.0f, 464.0f, 1e9f, -1e9f, 0.015625f, 0.0009765625f, 0.00146484375f, NAN, INFINITY};
    for (int i = 0; i < 200000; i++) xs.push_back((i & 1 ? -1.0f : 1.0f) * std::exp2(lg(r2)));
    for (int v = 0; v < 256; v++) xs.push_back(seventy::fp8e4m3ToFloat(uint8_t(v)));  // every code round-trips
    for (float x : xs) {
      const unsigned char q = __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
      const bool ok = std::isnan(x)   ? (q & 0x7f) == 0x7f  // NaN (its sign is not specified)
                      : std::isinf(x) ? q == (x > 0 ? 0x7e : 0xfe)
                                      : q == seventy::floatToFp8e4m3(x);
      badQ += !ok;
    }
  }
  report(badQ == 0, "ptx cvt.rn.satfinite.e4m3x2.f32 against the CPU quantizer", std::to_string(badQ) + " wrong");
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1e5f, 1e5f);
  int badBf = 0, badH = 0;
  for (int i = 0; i < 100000; i++) {
    const float f = u(rng) * (i % 3 == 0 ? 1e-9f : 1.0f);
    if (__float2bfloat16_rn(f).__x != seventy::floatToBf16(f)) badBf++;
    const __half h = __float2half_rn(f);
    const float back = __half2float(h);
    // round to nearest: no other f16 is closer (65504 is the largest finite)
    if (std::fabs(f) < 65504 && std::fabs(back - f) > std::fabs(f) * 0x1p-11f + 0x1p-25f) badH++;
  }
  report(badBf == 0 && badH == 0, "bf16 / f16 round-to-nearest conversions", std::to_string(badBf) + " bf16, " + std::to_string(badH) + " f16 wrong");
}

// ---------------------------------------------------------------------------------------------
__global__ void shuffleKernel(int* out) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int* o = out + warp * 32 * 6 + lane;
  o[0] = __shfl_xor_sync(0xffffffffu, lane * 10, 5);
  o[32] = __shfl_up_sync(0xffffffffu, lane * 10, 3);
  o[64] = __shfl_down_sync(0xffffffffu, lane * 10, 2, 8);
  o[96] = __shfl_sync(0xffffffffu, lane * 10, 7);
  o[128] = int(__ballot_sync(0xffffffffu, lane % 3 == 0));
  o[160] = int(__shfl_sync(0xffffffffu, float(lane) + 0.5f, 31 - lane));
}

static void testShuffles() {
  int* d = devAlloc<int>(64 * 6);
  SEVENTY_LAUNCH(1, 64, 0, 0, shuffleKernel)(d);
  std::vector<int> h(64 * 6);
  cudaMemcpy(h.data(), d, h.size() * 4, cudaMemcpyDeviceToHost);
  unsigned ballot = 0;
  for (int l = 0; l < 32; l++)
    if (l % 3 == 0) ballot |= 1u << l;
  int bad = 0;
  for (int w = 0; w < 2; w++)
    for (int l = 0; l < 32; l++) {
      const int* o = h.data() + w * 192 + l;
      bad += o[0] != (l ^ 5) * 10;
      bad += o[32] != (l >= 3 ? l - 3 : l) * 10;
      bad += o[64] != ((l % 8) + 2 < 8 ? l + 2 : l) * 10;
      bad += o[96] != 70;
      bad += unsigned(o[128]) != ballot;
      bad += o[160] != 31 - l;
    }
  cudaFree(d);
  report(bad == 0, "warp shuffles (xor, up, down with width 8, idx, float) and ballot", std::to_string(bad) + " wrong");
}

// ---------------------------------------------------------------------------------------------
// Kernels for the checks, each with a flag that plants the bug.
__global__ void barrierKernel(int* out, bool divergent) {
  __shared__ int s[64];
  s[threadIdx.x] = threadIdx.x;
  if (!divergent || threadIdx.x < 32) __syncthreads();
  if (divergent && threadIdx.x >= 32) return;
  out[threadIdx.x] = s[63 - threadIdx.x];
}
__global__ void shuffleMaskKernel(int* out, bool early) {
  if (early && threadIdx.x == 7) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, int(threadIdx.x), 1);
}
__global__ void divergentShuffleKernel(int* out, bool divergent) {
  int v = threadIdx.x;
  if (divergent && threadIdx.x < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  else v = __shfl_xor_sync(0xffffffffu, v, 2);
  out[threadIdx.x] = v;
}
__global__ void boundsKernel(const float* in, float* out, int n, int extra) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n + extra) out[i % n] = in[i];
}
__global__ void uninitSharedKernel(float* out, bool skip) {
  __shared__ float s[128];
  if (!(skip && threadIdx.x == 5)) s[threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = s[127 - threadIdx.x];
}
__global__ void raceKernel(float* out, bool noBarrier) {
  __shared__ float s[128];
  s[threadIdx.x] = float(threadIdx.x);
  __syncthreads();
  s[threadIdx.x] += 1.0f;
  if (!noBarrier) __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 64) % 128];  // another warp's element
}
__global__ void dynSmemKernel(float* out, int n) {
  SEVENTY_DYNAMIC_SMEM(float, buf);
  for (int i = threadIdx.x; i < n; i += blockDim.x) buf[i] = float(i);
  __syncthreads();
  out[threadIdx.x] = buf[n - 1 - threadIdx.x];
}
__global__ void __launch_bounds__(128) boundedKernel(int* out) { out[threadIdx.x] = 1; }
__global__ void hostPointerKernel(const int* p, int* out) { out[threadIdx.x] = p[threadIdx.x]; }
__global__ void orderKernel(int* counter, int* order) {
  if (threadIdx.x == 0) order[blockIdx.x] = atomicAdd(counter, 1);
}
__global__ void addOneKernel(int* p, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) p[i] += 1;
}

static void testChecks() {
  expectCheck("__syncthreads reached by only part of the block", "synccheck", [] {
    int* d = devAlloc<int>(64);
    SEVENTY_LAUNCH(1, 64, 0, 0, barrierKernel)(d, true);
  }, [] {
    int* d = devAlloc<int>(64);
    SEVENTY_LAUNCH(1, 64, 0, 0, barrierKernel)(d, false);
  });
  expectCheck("shuffle whose mask names an exited lane", "synccheck", [] {
    int* d = devAlloc<int>(32);
    SEVENTY_LAUNCH(1, 32, 0, 0, shuffleMaskKernel)(d, true);
  }, [] {
    int* d = devAlloc<int>(32);
    SEVENTY_LAUNCH(1, 32, 0, 0, shuffleMaskKernel)(d, false);
  });
  expectCheck("lanes of a warp at different shuffles", "divergent warp collective", [] {
    int* d = devAlloc<int>(32);
    SEVENTY_LAUNCH(1, 32, 0, 0, divergentShuffleKernel)(d, true);
  }, [] {
    int* d = devAlloc<int>(32);
    SEVENTY_LAUNCH(1, 32, 0, 0, divergentShuffleKernel)(d, false);
  });
  expectCheck("global read one element past an allocation", "memcheck", [] {
    float* in = devAlloc<float>(100);
    float* out = devAlloc<float>(100);
    cudaMemset(in, 0, 400);
    SEVENTY_LAUNCH(4, 32, 0, 0, boundsKernel)(in, out, 100, 1);
  }, [] {
    float* in = devAlloc<float>(100);
    float* out = devAlloc<float>(100);
    cudaMemset(in, 0, 400);
    SEVENTY_LAUNCH(4, 32, 0, 0, boundsKernel)(in, out, 100, 0);
  });
  expectCheck("global read after cudaFree", "was freed", [] {
    float* in = devAlloc<float>(100);
    float* out = devAlloc<float>(100);
    cudaFree(in);
    SEVENTY_LAUNCH(4, 32, 0, 0, boundsKernel)(in, out, 100, 0);
  }, [] {
    float* in = devAlloc<float>(100);
    float* out = devAlloc<float>(100);
    SEVENTY_LAUNCH(4, 32, 0, 0, boundsKernel)(in, out, 100, 0);
    cudaFree(in);
  });
  expectCheck("host pointer dereferenced in a kernel", "not device memory", [] {
    static std::vector<int> host(32, 1);
    int* out = devAlloc<int>(32);
    SEVENTY_LAUNCH(1, 32, 0, 0, hostPointerKernel)(host.data(), out);
  }, [] {
    int* in = devAlloc<int>(32);
    cudaMemset(in, 0, 128);
    int* out = devAlloc<int>(32);
    SEVENTY_LAUNCH(1, 32, 0, 0, hostPointerKernel)(in, out);
  });
  expectCheck("shared memory read before any write (poisoned)", "initcheck", [] {
    float* out = devAlloc<float>(128);
    SEVENTY_LAUNCH(1, 128, 0, 0, uninitSharedKernel)(out, true);
  }, [] {
    float* out = devAlloc<float>(128);
    SEVENTY_LAUNCH(1, 128, 0, 0, uninitSharedKernel)(out, false);
  });
  expectCheck("shared memory race without __syncthreads", "racecheck", [] {
    float* out = devAlloc<float>(128);
    SEVENTY_LAUNCH(1, 128, 0, 0, raceKernel)(out, true);
  }, [] {
    float* out = devAlloc<float>(128);
    SEVENTY_LAUNCH(1, 128, 0, 0, raceKernel)(out, false);
  });
  expectCheck("dynamic shared memory past the launch's size", "past the launch", [] {
    float* out = devAlloc<float>(64);
    SEVENTY_LAUNCH(1, 64, 1024 * 4 - 4, 0, dynSmemKernel)(out, 1024);
  }, [] {
    float* out = devAlloc<float>(64);
    SEVENTY_LAUNCH(1, 64, 1024 * 4, 0, dynSmemKernel)(out, 1024);
  });

  // Launch-configuration errors come back from cudaGetLastError, as on the GPU.
  {
    float* out = devAlloc<float>(64);
    cudaGetLastError();
    SEVENTY_LAUNCH(1, 64, 60 * 1024, 0, dynSmemKernel)(out, 60 * 256);
    const cudaError_t without = cudaGetLastError();
    cudaFuncSetAttribute(dynSmemKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 60 * 1024);
    SEVENTY_LAUNCH(1, 64, 60 * 1024, 0, dynSmemKernel)(out, 60 * 256);
    const cudaError_t with = cudaGetLastError();
    cudaDeviceSynchronize();
    report(without == cudaErrorInvalidValue && with == cudaSuccess, "check: > 48 KB dynamic shared memory needs the opt-in attribute",
           std::string(cudaGetErrorName(without)) + " without, " + cudaGetErrorName(with) + " with");
    cudaFree(out);
  }
  {
    int* out = devAlloc<int>(256);
    SEVENTY_LAUNCH(1, 256, 0, 0, boundedKernel)(out);
    const cudaError_t over = cudaGetLastError();
    SEVENTY_LAUNCH(1, 128, 0, 0, boundedKernel)(out);
    const cudaError_t at = cudaGetLastError();
    cudaDeviceSynchronize();
    report(over == cudaErrorLaunchOutOfResources && at == cudaSuccess && emu::launchBoundOf((const void*)&boundedKernel) == 128 &&
               emu::launchBoundOf((const void*)&addOneKernel) == 0,
           "check: launch past __launch_bounds__(128)", std::string(cudaGetErrorName(over)) + " at 256 threads, " + cudaGetErrorName(at) + " at 128");
    cudaFree(out);
  }
}

// Streams run at synchronization points; graphs replay their captured launches with the same pointers.
static void testStreamsAndGraphs() {
  int* d = devAlloc<int>(256);
  int* pinned = nullptr;
  cudaHostAlloc(&pinned, 256 * 4, cudaHostAllocDefault);
  for (int i = 0; i < 256; i++) pinned[i] = i;
  cudaStream_t s;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  cudaMemcpyAsync(d, pinned, 1024, cudaMemcpyHostToDevice, s);
  SEVENTY_LAUNCH(1, 64, 0, s, addOneKernel)(d, 256);
  cudaMemcpyAsync(pinned, d, 1024, cudaMemcpyDeviceToHost, s);
  const bool staleBeforeSync = pinned[10] == 10;  // not synchronized yet: the copy has not run
  cudaStreamSynchronize(s);
  const bool afterSync = pinned[10] == 11;
  report(staleBeforeSync && afterSync, "stream work runs at synchronization (an unsynchronized read sees stale data)");

  cudaGraph_t g;
  cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
  SEVENTY_LAUNCH(1, 64, 0, s, addOneKernel)(d, 256);
  SEVENTY_LAUNCH(1, 64, 0, s, addOneKernel)(d, 256);
  cudaStreamEndCapture(s, &g);
  cudaGraphExec_t exec;
  cudaGraphInstantiate(&exec, g, 0);
  cudaStreamSynchronize(s);
  std::vector<int> h(256);
  cudaMemcpy(h.data(), d, 1024, cudaMemcpyDeviceToHost);
  const bool notRunByCapture = h[0] == 1;
  cudaGraphLaunch(exec, s);
  cudaGraphLaunch(exec, s);
  cudaStreamSynchronize(s);
  cudaMemcpy(h.data(), d, 1024, cudaMemcpyDeviceToHost);
  report(notRunByCapture && h[0] == 5 && h[255] == 260, "graph: capture records, each replay runs the launches again");

  cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
  SEVENTY_LAUNCH(1, 64, 0, s, addOneKernel)(d, 256);
  const cudaError_t syncErr = cudaStreamSynchronize(s);
  cudaGraph_t g2 = nullptr;
  const cudaError_t endErr = cudaStreamEndCapture(s, &g2);
  cudaGetLastError();
  report(syncErr == cudaErrorStreamCaptureUnsupported && endErr == cudaErrorStreamCaptureInvalidated && !g2,
         "graph: synchronizing inside a capture invalidates it");
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
  cudaFreeHost(pinned);
  cudaFree(d);
}

static void testSeededOrder() {
  auto orderWith = [](uint64_t seed) {
    emu::setSeed(seed);
    int* counter = devAlloc<int>(1);
    int* order = devAlloc<int>(64);
    cudaMemset(counter, 0, 4);
    SEVENTY_LAUNCH(64, 32, 0, 0, orderKernel)(counter, order);
    std::vector<int> h(64);
    cudaMemcpy(h.data(), order, 256, cudaMemcpyDeviceToHost);
    cudaFree(counter);
    cudaFree(order);
    return h;
  };
  const auto a = orderWith(1), b = orderWith(2), a2 = orderWith(1);
  report(a != b && a == a2, "block order is shuffled by the seed (and reproducible)");
}

// ---------------------------------------------------------------------------------------------
// cp.async and programmatic dependent launch. The copy is performed when the issuing thread's
// wait_group retires its group; until then any access to its bytes fails. Functional: pieces of 4, 8 and
// 16 bytes, partial src-size (zero fill) and two groups retired one at a time.
__global__ void cpAsyncCopyKernel(const uint32_t* src, uint32_t* out) {
  __shared__ uint4 bufV[2][32];
  uint32_t (*buf)[4 * 32] = reinterpret_cast<uint32_t (*)[4 * 32]>(bufV);
  const int t = threadIdx.x;
  // group 0: 16 bytes per thread, the last thread reads only 8 of them (the other 8 zero-filled)
  emu::ptx::cp_async_shared_global<16>(&buf[0][4 * t], src + 4 * t, t == 31 ? 8 : 16);
  emu::ptx::cp_async_commit_group();
  // group 1: one 8-byte and two 4-byte pieces
  emu::ptx::cp_async_shared_global<8>(&buf[1][4 * t], src + 128 + 4 * t);
  emu::ptx::cp_async_shared_global<4>(&buf[1][4 * t + 2], src + 128 + 4 * t + 2);
  emu::ptx::cp_async_shared_global<4>(&buf[1][4 * t + 3], src + 128 + 4 * t + 3, 0);
  emu::ptx::cp_async_commit_group();
  emu::ptx::cp_async_wait_group(1);  // group 0 only
  for (int i = 0; i < 4; i++) out[4 * t + i] = buf[0][4 * t + i];
  emu::ptx::cp_async_wait_all();
  for (int i = 0; i < 4; i++) out[128 + 4 * t + i] = buf[1][4 * t + i];
}

// mode 0: correct (wait, barrier, read the other warp's bytes); 1: reads a group that is still pending;
// 2: no barrier between the other warp's wait and the read; 3: refills a buffer the other warp still
// reads (no barrier before the next cp.async).
__global__ void cpAsyncPipelineKernel(const uint32_t* src, uint32_t* out, int mode) {
  __shared__ uint32_t buf[2][64];
  const int t = threadIdx.x, o = (t + 32) % 64;
  emu::ptx::cp_async_shared_global<4>(&buf[0][t], src + t);
  emu::ptx::cp_async_commit_group();
  emu::ptx::cp_async_shared_global<4>(&buf[1][t], src + 64 + t);
  emu::ptx::cp_async_commit_group();
  if (mode == 2) __syncthreads();
  emu::ptx::cp_async_wait_group(mode == 1 ? 1 : 0);
  if (mode != 2) __syncthreads();
  uint32_t v = buf[0][o] + buf[1][o];
  if (mode != 3) __syncthreads();
  emu::ptx::cp_async_shared_global<4>(&buf[0][t], src + 128 + t);
  emu::ptx::cp_async_wait_all();
  __syncthreads();
  out[t] = v + buf[0][o];
}

__global__ void pdlWriterKernel(int* out, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = 3 * i;
}
__global__ void pdlReaderKernel(const int* in, const int* weights, int* out, int n, bool waitFirst) {
  const int i = threadIdx.x;
  const int w = weights[i];  // not written by the previous kernel: legal before the wait
  if (waitFirst) emu::ptx::griddepcontrol_wait();
  const int v = in[i];
  if (!waitFirst) emu::ptx::griddepcontrol_wait();
  out[i] = v + w;
}

static void testAsyncCopyAndPdl() {
  {
    std::vector<uint32_t> h(3 * 128);
    for (size_t i = 0; i < h.size(); i++) h[i] = uint32_t(i * 2654435761u);
    uint32_t* src = devAlloc<uint32_t>(h.size());
    uint32_t* out = devAlloc<uint32_t>(256);
    cudaMemcpy(src, h.data(), h.size() * 4, cudaMemcpyHostToDevice);
    SEVENTY_LAUNCH(1, 32, 0, 0, cpAsyncCopyKernel)(src, out);
    std::vector<uint32_t> r(256);
    cudaMemcpy(r.data(), out, 256 * 4, cudaMemcpyDeviceToHost);
    int bad = 0;
    for (int i = 0; i < 128; i++) bad += r[size_t(i)] != (i >= 126 ? 0u : h[size_t(i)]);
    for (int i = 0; i < 128; i++) bad += r[size_t(128 + i)] != (i % 4 == 3 ? 0u : h[size_t(128 + i)]);
    report(bad == 0, "cp.async 4/8/16 bytes, zero fill, groups retired in order", std::to_string(bad) + " wrong words");
    cudaFree(src);
    cudaFree(out);
  }
  auto pipeline = [](int mode) {
    return [mode] {
      uint32_t* src = devAlloc<uint32_t>(192);
      uint32_t* out = devAlloc<uint32_t>(64);
      cudaMemset(src, 1, 192 * 4);
      SEVENTY_LAUNCH(1, 64, 0, 0, cpAsyncPipelineKernel)(src, out, mode);
    };
  };
  expectCheck("shared read of a cp.async group not yet waited for", "cp.async check", pipeline(1), pipeline(0));
  // The other warp's copy is either still in flight or landed without a barrier: either check may fire.
  expectCheck("cp.async data read with no barrier after the writer's wait", "check FAILED", pipeline(2), pipeline(0));
  expectCheck("cp.async refilling a buffer another warp still reads", "check FAILED", pipeline(3), pipeline(0));
  auto pdl = [](bool waitFirst, bool programmatic) {
    return [waitFirst, programmatic] {
      int* a = devAlloc<int>(64);
      int* w = devAlloc<int>(64);
      int* b = devAlloc<int>(64);
      cudaMemset(w, 0, 64 * 4);
      SEVENTY_LAUNCH(1, 64, 0, 0, pdlWriterKernel)(a, 64);
      if (programmatic) SEVENTY_LAUNCH_PDL(1, 64, 0, 0, pdlReaderKernel)(a, w, b, 64, waitFirst);
      else SEVENTY_LAUNCH(1, 64, 0, 0, pdlReaderKernel)(a, w, b, 64, waitFirst);
      std::vector<int> r(64);
      cudaMemcpy(r.data(), b, 64 * 4, cudaMemcpyDeviceToHost);
      for (int i = 0; i < 64; i++)
        if (r[size_t(i)] != 3 * i) _exit(5);
    };
  };
  expectCheck("programmatic launch reading the previous kernel's output before griddepcontrol.wait", "PDL check", pdl(false, true),
              pdl(true, true));
  std::string err;
  report(inChild(pdl(false, false), err) == 0, "the same read before the wait in an ordinary launch is legal");
}

int main() {
  testMma();
  testLdmatrix();
  testConversions();
  testShuffles();
  testChecks();
  testStreamsAndGraphs();
  testSeededOrder();
  testAsyncCopyAndPdl();
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
