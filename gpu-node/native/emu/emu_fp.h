// seventy-emu: the half / bfloat16 / fp8 types and conversions of cuda_fp16.h, cuda_bf16.h and
// cuda_fp8.h that the kernels use, bit-exact with the CUDA definitions (round to nearest even).
#pragma once

#include <stdint.h>
#include <string.h>

#include <cmath>

#include "emu_runtime.h"

// ---- bfloat16 ----
struct __nv_bfloat16_raw { unsigned short x; };
struct __nv_bfloat16 { unsigned short __x; };
struct __nv_bfloat162 { __nv_bfloat16 x, y; };

inline unsigned short emu_f32_to_bf16_rn(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fff;  // NaN → canonical NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return (unsigned short)(u >> 16);
}
inline float emu_bf16_to_f32(unsigned short b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{emu_f32_to_bf16_rn(f)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 h) { return emu_bf16_to_f32(h.__x); }
inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) { return __nv_bfloat162{__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)}; }
inline float2 __bfloat1622float2(__nv_bfloat162 h) { return make_float2(__bfloat162float(h.x), __bfloat162float(h.y)); }

// ---- half (IEEE binary16) ----
struct __half_raw { unsigned short x; };
struct __half2_raw { unsigned short x, y; };
struct __half { unsigned short __x; };
struct __half2 { __half x, y; };

inline float emu_f16_to_f32(unsigned short h) {
  const uint32_t s = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  uint32_t u;
  if (e == 0x1f) {
    u = s | 0x7f800000u | (m << 13);  // inf / NaN
  } else if (e == 0) {
    if (m == 0) {
      u = s;
    } else {  // subnormal: m · 2^-24, normalised
      int sh = 0;
      uint32_t mm = m;
      while (!(mm & 0x400u)) {
        mm <<= 1;
        sh++;
      }
      u = s | (uint32_t(127 - 15 + 1 - sh) << 23) | ((mm & 0x3ffu) << 13);
    }
  } else {
    u = s | ((e + 127 - 15) << 23) | (m << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}
inline unsigned short emu_f32_to_f16_rn(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  const uint32_t s = (u >> 16) & 0x8000u;
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7fff;
  if (a >= 0x477ff000u) return (unsigned short)(s | 0x7c00u);  // rounds to ≥ 65520: inf
  if (a < 0x38800000u) {  // below 2^-14: subnormal (or zero)
    const int e = int(a >> 23);
    if (e < 102) return (unsigned short)s;  // < 2^-25: rounds to 0
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;
    const int shift = 126 - e;  // so that the result is in units of 2^-24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (r & 1u))) r++;
    return (unsigned short)(s | r);
  }
  uint32_t r = ((a >> 13) - (112u << 10));
  const uint32_t rem = a & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) r++;
  return (unsigned short)(s | r);
}
inline float __half2float(__half h) { return emu_f16_to_f32(h.__x); }
inline __half __float2half_rn(float f) { return __half{emu_f32_to_f16_rn(f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float2 __half22float2(__half2 h) { return make_float2(__half2float(h.x), __half2float(h.y)); }

// ---- fp8 (cuda_fp8.h) ----
typedef unsigned char __nv_fp8_storage_t;
typedef unsigned short __nv_fp8x2_storage_t;
enum __nv_fp8_interpretation_t { __NV_E4M3, __NV_E5M2 };
enum __nv_saturation_t { __NV_NOSAT, __NV_SATFINITE };

// cvt.rn.f16x2.{e4m3x2,e5m2x2} (PTX ISA 8.7, §9.7.9.21 "cvt"; formats: §5.2.5.1 "Alternate Floating
// Point Data Formats"): each byte is widened exactly to f16. e4m3: 1 sign, 4 exponent bits (bias 7),
// 3 mantissa bits, no infinities, S.1111.111 is NaN, exponent 0 is subnormal (m/8 · 2^-6).
// e5m2: the top byte of an f16.
inline unsigned short emu_fp8_to_f16(unsigned char v, __nv_fp8_interpretation_t fmt) {
  if (fmt == __NV_E5M2) return (unsigned short)(v << 8);
  const unsigned short s = (unsigned short)((v & 0x80u) << 8);
  const unsigned e = (v >> 3) & 0xfu, m = v & 7u;
  if (e == 0xf && m == 7) return 0x7fff;  // NaN
  if (e == 0) {
    if (m == 0) return s;
    // m · 2^-9 = 1.f · 2^(p − 9) with p the top set bit of m: an f16 normal (exponent ≥ −8 ≥ −14)
    const int p = m >= 4 ? 2 : m >= 2 ? 1 : 0;
    const unsigned frac = (m << (10 - p)) & 0x3ffu;
    return (unsigned short)(s | ((unsigned)(p - 9 + 15) << 10) | frac);
  }
  return (unsigned short)(s | ((e - 7 + 15) << 10) | (m << 7));
}
inline __half_raw __nv_cvt_fp8_to_halfraw(__nv_fp8_storage_t x, __nv_fp8_interpretation_t fmt) { return __half_raw{emu_fp8_to_f16(x, fmt)}; }
inline __half2_raw __nv_cvt_fp8x2_to_halfraw2(__nv_fp8x2_storage_t x, __nv_fp8_interpretation_t fmt) {
  // The low byte becomes the low half (.x), as cvt's "upper half of the source to the upper half of d".
  return __half2_raw{emu_fp8_to_f16((unsigned char)(x & 0xffu), fmt), emu_fp8_to_f16((unsigned char)(x >> 8), fmt)};
}

// cvt.rn.satfinite.e4m3x2.f32 (PTX ISA 8.7, §9.7.9.21 "cvt"): round to nearest even; .satfinite clamps
// finite values beyond the largest e4m3 (±448) to it, and NaN (and ±inf) become NaN (0x7f) / ±448.
// Written from the format: |x| = (1 + m/8)·2^(e−7) for e in 1..15 (S.1111.111 is NaN), m/8·2^−6 for e = 0.
inline unsigned char emu_f32_to_e4m3_satfinite(float x) {
  const unsigned char sign = std::signbit(x) ? 0x80 : 0x00;
  if (std::isnan(x)) return 0x7f;
  const double a = std::fabs(double(x));
  if (a >= 448.0) return (unsigned char)(sign | 0x7e);
  auto rne = [](double v) {  // v ≥ 0, round half to even
    const double f = std::floor(v), d = v - f;
    return (d > 0.5 || (d == 0.5 && std::fmod(f, 2.0) != 0.0)) ? f + 1 : f;
  };
  if (a < 0.015625) return (unsigned char)(sign | (unsigned)rne(a * 512.0));  // subnormal: m·2^-9 (8 → 2^-6)
  int e2;
  const double fr = std::frexp(a, &e2);  // a = fr·2^e2, fr in [0.5, 1)
  int e = e2 - 1;                         // a = (2·fr)·2^e, 2·fr in [1, 2)
  double m = rne((2.0 * fr - 1.0) * 8.0);
  if (m == 8) {
    m = 0;
    e++;
  }
  if (e + 7 > 15 || (e + 7 == 15 && m == 7)) return (unsigned char)(sign | 0x7e);
  return (unsigned char)(sign | ((e + 7) << 3) | (unsigned)m);
}
inline __nv_fp8_storage_t __nv_cvt_float_to_fp8(float x, __nv_saturation_t sat, __nv_fp8_interpretation_t fmt) {
  // Only the form the engine uses is emulated: saturating e4m3.
  if (sat != __NV_SATFINITE || fmt != __NV_E4M3) emu::fail("ptx", "__nv_cvt_float_to_fp8: only __NV_SATFINITE / __NV_E4M3 is emulated");
  return emu_f32_to_e4m3_satfinite(x);
}
inline __nv_fp8x2_storage_t __nv_cvt_float2_to_fp8x2(float2 x, __nv_saturation_t sat, __nv_fp8_interpretation_t fmt) {
  return (__nv_fp8x2_storage_t)(__nv_cvt_float_to_fp8(x.x, sat, fmt) | __nv_cvt_float_to_fp8(x.y, sat, fmt) << 8);
}
