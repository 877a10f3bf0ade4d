// seventy-emu: warp-wide matrix instructions, written from the PTX ISA (release 8.7) fragment tables.
#include "emu_fp.h"
#include "emu_runtime.h"

namespace emu {

// mma.m16n8k16 with .bf16 multiplicands and .f32 accumulators, §9.7.14.5.8 "Matrix Fragments for
// mma.m16n8k16 with floating point type" (Figures 79, 81, 82). With groupID = %laneid >> 2 and
// threadID_in_group = %laneid % 4:
//   A (16×16, four .b32 registers of two bf16 each, a0..a7 low to high):
//     row = groupID for a_i with 0 ≤ i < 2 or 4 ≤ i < 6, groupID + 8 otherwise
//     col = threadID_in_group·2 + (i & 1) for i < 4, threadID_in_group·2 + (i & 1) + 8 for i ≥ 4
//   B (16×8, two .b32 registers, b0..b3):
//     row = threadID_in_group·2 + (i & 1) for i < 2, threadID_in_group·2 + (i & 1) + 8 for i ≥ 2
//     col = groupID
//   C, D (16×8, four .f32, c0..c3):
//     row = groupID for c0, c1, groupID + 8 for c2, c3;  col = threadID_in_group·2 + (i & 1)
// D = A·B + C. The products of bf16 values are exact in float; the sum here is taken in double and
// rounded once (the tensor cores' internal rounding and summation order are not specified by PTX and
// are not modelled).
static void mmaM16n8k16Bf16(MmaLane (&lanes)[32]) {
  float A[16][16], B[16][8], C[16][8];
  for (int lane = 0; lane < 32; lane++) {
    const int g = lane >> 2, t = lane % 4;
    for (int i = 0; i < 8; i++) {
      const uint32_t reg = lanes[lane].a[i / 2];
      const unsigned short bits = (unsigned short)((i & 1) ? reg >> 16 : reg & 0xffffu);
      const int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
      const int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      A[row][col] = emu_bf16_to_f32(bits);
    }
    for (int i = 0; i < 4; i++) {
      const uint32_t reg = lanes[lane].b[i / 2];
      const unsigned short bits = (unsigned short)((i & 1) ? reg >> 16 : reg & 0xffffu);
      const int row = t * 2 + (i & 1) + (i >= 2 ? 8 : 0);
      B[row][g] = emu_bf16_to_f32(bits);
    }
    for (int i = 0; i < 4; i++) C[g + (i >= 2 ? 8 : 0)][t * 2 + (i & 1)] = lanes[lane].c[i];
  }
  for (int lane = 0; lane < 32; lane++) {
    const int g = lane >> 2, t = lane % 4;
    for (int i = 0; i < 4; i++) {
      const int row = g + (i >= 2 ? 8 : 0), col = t * 2 + (i & 1);
      double d = C[row][col];
      for (int k = 0; k < 16; k++) d += double(A[row][k]) * double(B[k][col]);
      lanes[lane].c[i] = float(d);
    }
  }
}

void mmaCompute(MmaKind kind, MmaLane (&lanes)[32]) {
  switch (kind) {
    case MmaKind::M16N8K16_BF16_F32: mmaM16n8k16Bf16(lanes); break;
  }
}

}  // namespace emu
