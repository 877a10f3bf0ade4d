// ldmatrix.sync.aligned.m8n8.x4{.trans}.shared.b16: four 8×8 b16 matrices from shared memory into one
// register each; lanes 8i..8i+7 address the 16-byte rows of matrix i. Without .trans lane (g, t) gets
// row g, columns 2t..2t+1 (an mma A/B fragment quarter of a row-major tile); with .trans, column g,
// rows 2t..2t+1 (the fragment of a tile stored transposed). Emulated by emu/ptx.cpp.
#pragma once

#include <stdint.h>

#include "cuda_common.cuh"

namespace seventy::cuda {

template <bool Trans>
__device__ __forceinline__ void ldmatrixX4(uint32_t (&d)[4], const uint16_t* p) {
#ifdef SEVENTY_EMU
  emu::ptx::ldmatrix_m8n8_b16<4, Trans>(d, p, EMU_SITE_);
#else
  const uint32_t a = uint32_t(__cvta_generic_to_shared(p));
  if constexpr (Trans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(a));
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
                 : "r"(a));
#endif
}

}  // namespace seventy::cuda
