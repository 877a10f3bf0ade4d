// Number formats and counter-based randomness shared by the CPU kernels, the CUDA kernels and the
// tests, so every flavor rounds and draws exactly alike. No CUDA headers: under nvcc the functions
// are also device functions.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define SEVENTY_HD __host__ __device__ __forceinline__
#else
#define SEVENTY_HD inline
#endif

namespace seventy {

SEVENTY_HD uint32_t floatBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

SEVENTY_HD float bitsFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// bf16 is the top half of an f32: widening is exact.
SEVENTY_HD float bf16ToFloat(uint16_t h) { return bitsFloat(uint32_t(h) << 16); }

// Round to nearest even; NaN stays a quiet NaN (same rule as gpu-node/src/model/safetensors.ts).
SEVENTY_HD uint16_t floatToBf16(float f) {
  uint32_t b = floatBits(f);
  if ((b & 0x7fffffffu) > 0x7f800000u) return uint16_t((b >> 16) | 0x40);
  return uint16_t((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

SEVENTY_HD float f16ToFloat(uint16_t x) {
  uint32_t em = x & 0x7fffu;
  uint32_t sign = uint32_t(x & 0x8000u) << 16;
  if (em >= 0x0400u) {
    uint32_t bits = em >= 0x7c00u ? (0x7f800000u | (uint32_t(x & 0x3ffu) << 13)) : ((em << 13) + 0x38000000u);
    return bitsFloat(sign | bits);
  }
  float v = float(em) * 5.9604644775390625e-8f;  // 2^-24, exact
  return sign ? -v : v;
}

// FP8 e4m3 ("e4m3fn": bias 7, no infinities, 0x7f/0xff NaN, largest finite 448).
constexpr float kFp8Max = 448.0f;

SEVENTY_HD float fp8e4m3ToFloat(uint8_t b) {
  uint32_t e = (b >> 3) & 0xfu, m = b & 7u;
  float v;
  if (e == 0) v = float(m) * 0.001953125f;  // m · 2^-9
  else if (e == 15 && m == 7) v = NAN;
  else v = bitsFloat(((e + 120u) << 23) | (m << 20));  // (1 + m/8) · 2^(e-7)
  return (b & 0x80u) ? -v : v;
}

// Round to nearest even, saturating at ±448 (what __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3) does).
SEVENTY_HD uint8_t floatToFp8e4m3(float x) {
  uint32_t u = floatBits(x);
  uint8_t sign = uint8_t((u >> 24) & 0x80u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return uint8_t(sign | 0x7f);
  if (a >= 0x43e00000u) return uint8_t(sign | 0x7e);  // >= 448
  if (a < 0x3c800000u) {                              // < 2^-6: subnormal, m · 2^-9
    // a · 512 < 8 is exact in float; round half to even by hand (no dependence on the rounding mode).
    float v = bitsFloat(a) * 512.0f;
    uint32_t m = uint32_t(v);
    float d = v - float(m);
    if (d > 0.5f || (d == 0.5f && (m & 1u))) m++;
    return uint8_t(sign | m);  // m == 8 encodes 2^-6, the smallest normal
  }
  int32_t e = int32_t(a >> 23) - 127;  // -6 .. 8
  uint32_t mant = a & 0x7fffffu;
  uint32_t r = mant >> 20, rem = mant & 0xfffffu;
  if (rem > 0x80000u || (rem == 0x80000u && (r & 1u))) r++;
  if (r == 8) {
    r = 0;
    e++;
  }
  if (e > 8 || (e == 8 && r == 7)) return uint8_t(sign | 0x7e);
  return uint8_t(sign | uint32_t((e + 7) << 3) | r);
}

// SplitMix64, as gpu-node/src/engine/rng.ts: output i of a generator started at `seed`.
SEVENTY_HD uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// uniformFor(seed, i) of rng.ts: a double in [0, 1) that depends only on (seed, outputIndex).
SEVENTY_HD double uniformFor(int64_t seed, int64_t outputIndex) {
  uint64_t state = uint64_t(seed) + (uint64_t(outputIndex) + 1ull) * 0x9e3779b97f4a7c15ull;
  return double(mix64(state) >> 11) * 1.1102230246251565e-16;  // 2^-53
}

// Dummy weights (--load-format dummy): element `index` of tensor `tensorId` is uniform in
// [-amplitude, amplitude), rounded to bf16 — the same bits on the CPU and on the device.
SEVENTY_HD uint16_t dummyWeightBf16(uint64_t seed, uint32_t tensorId, uint64_t index, float amplitude) {
  uint64_t z = mix64(seed ^ (uint64_t(tensorId) << 40) ^ mix64(index + 0x632be59bd9b4e019ull));
  float u = float(uint32_t(z >> 40)) * 5.9604644775390625e-8f;  // [0, 1), 24 bits
  return floatToBf16((u * 2.0f - 1.0f) * amplitude);
}

}  // namespace seventy
