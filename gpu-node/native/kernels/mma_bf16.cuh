// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32, the tensor-core step of the decode GEMVs:
// c += A (16×16, four .b32 of bf16 pairs) · B (16×8, two .b32), fragments as in the PTX ISA's
// "Matrix Fragments for mma.m16n8k16 with floating point type" (emulated by emu/ptx.cpp).
#pragma once

#include <stdint.h>

#include "cuda_common.cuh"

namespace seventy::cuda {

__device__ __forceinline__ void mmaBf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
#ifdef SEVENTY_EMU
  emu::ptx::mma_m16n8k16_row_col_f32_bf16_bf16_f32(c, a, b0, b1, EMU_SITE_);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
}

}  // namespace seventy::cuda
