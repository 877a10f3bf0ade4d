// Narrow formats widened with integer bit manipulation and one exact multiply by a power of two: no
// table lookups and no cuda_fp8.hpp software conversion (sm_80 has no FP8 hardware). Host and device.
//
// The trick: move the narrow format's exponent and mantissa fields to the top of a float32's
// fields. Read as a float32 the value is v · 2^(bias_narrow − 127) for normals and subnormals alike
// (a narrow subnormal lands on a float32 subnormal with the same scaling), so one multiply by
// 2^(127 − bias_narrow) restores it exactly.
//
//   e4m3  s eeee mmm          → float bits  s | eeee mmm << 20,   × 2^120
//   fp16  s eeeee mmmmmmmmmm  → float bits  s | eeeee m… << 13,   × 2^112
//
// Not covered (weights and scales never hold them): e4m3's NaN (0x7f) widens to 480, fp16 inf/NaN to finite values.
#pragma once

#include <stdint.h>

#include "seventy/numerics.h"

namespace seventy {

SEVENTY_HD float fp8e4m3BitsToFloat(uint32_t b) {
  return bitsFloat(((b & 0x80u) << 24) | ((b & 0x7fu) << 20)) * 1.329227995784916e36f;  // 2^120
}

SEVENTY_HD float f16BitsToFloat(uint32_t h) {
  return bitsFloat(((h & 0x8000u) << 16) | ((h & 0x7fffu) << 13)) * 5.192296858534828e33f;  // 2^112
}

// Two e4m3 bytes (the low 16 bits) → two bf16 in one word, low byte in the low half. Exact: every
// e4m3 value is a bf16 value, so dropping the float's low 16 bits (all zero) is the conversion.
SEVENTY_HD uint32_t fp8x2ToBf16x2Bits(uint32_t twoBytes) {
  return (floatBits(fp8e4m3BitsToFloat(twoBytes & 0xffu)) >> 16) | (floatBits(fp8e4m3BitsToFloat((twoBytes >> 8) & 0xffu)) & 0xffff0000u);
}

// The 4-bit value at `shift` of a packed word as a float: 2^23 + q has q in its low mantissa bits.
SEVENTY_HD float nibbleToFloat(uint32_t word, int shift) {
  return bitsFloat(0x4b000000u | ((word >> shift) & 0xfu)) - 8388608.0f;
}

}  // namespace seventy
