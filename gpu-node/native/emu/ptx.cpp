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

// ---- ldmatrix ----
// ldmatrix.sync.aligned.m8n8.x{num}{.trans}.shared.b16, §9.7.14.5.15 "Warp-level matrix load instruction:
// ldmatrix" (the figure "ldmatrix fragment for one 8x8 matrix with .b16 elements"). Matrix i (0 ≤ i < num)
// is the eight 16-byte rows whose addresses lanes 8i..8i+7 hold; destination register d_i of every lane
// holds two b16 elements of matrix i, the lower-numbered one in the low half. With groupID = %laneid >> 2
// and threadID_in_group = %laneid % 4:
//   without .trans: row groupID, columns threadID_in_group·2 and threadID_in_group·2 + 1
//   with .trans:    column groupID, rows threadID_in_group·2 and threadID_in_group·2 + 1 (the element at
//                   (row r, column c) is delivered as if it were at (c, r))
// This is exactly the A/B fragment of mma.m16n8k16 for one 8×8 quarter (§9.7.14.5.8), which is why the
// kernels use it. lanes[l].a[0..3] holds the row lane l read (when l < 8·num); the result replaces a[0..num-1].
static void ldmatrixB16(MmaLane (&lanes)[32], int num, bool trans) {
  uint16_t M[4][8][8];  // [matrix][row][column]
  for (int i = 0; i < num; i++)
    for (int r = 0; r < 8; r++)
      for (int c = 0; c < 8; c++) {
        const uint32_t w = lanes[8 * i + r].a[c / 2];
        M[i][r][c] = uint16_t((c & 1) ? w >> 16 : w & 0xffffu);
      }
  for (int lane = 0; lane < 32; lane++) {
    const int g = lane >> 2, t = lane % 4;
    for (int i = 0; i < 4; i++) lanes[lane].a[i] = 0;
    for (int i = 0; i < num; i++) {
      const uint16_t lo = trans ? M[i][2 * t][g] : M[i][g][2 * t];
      const uint16_t hi = trans ? M[i][2 * t + 1][g] : M[i][g][2 * t + 1];
      lanes[lane].a[i] = uint32_t(lo) | uint32_t(hi) << 16;
    }
  }
}

void mmaCompute(MmaKind kind, MmaLane (&lanes)[32]) {
  switch (kind) {
    case MmaKind::M16N8K16_BF16_F32: mmaM16n8k16Bf16(lanes); break;
    case MmaKind::LDMATRIX_X1: ldmatrixB16(lanes, 1, false); break;
    case MmaKind::LDMATRIX_X2: ldmatrixB16(lanes, 2, false); break;
    case MmaKind::LDMATRIX_X4: ldmatrixB16(lanes, 4, false); break;
    case MmaKind::LDMATRIX_X1_TRANS: ldmatrixB16(lanes, 1, true); break;
    case MmaKind::LDMATRIX_X2_TRANS: ldmatrixB16(lanes, 2, true); break;
    case MmaKind::LDMATRIX_X4_TRANS: ldmatrixB16(lanes, 4, true); break;
  }
}

}  // namespace emu
