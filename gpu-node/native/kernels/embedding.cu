// Embedding gather: one block per token row, 16-byte loads of the bf16 table row, widened into the
// float32 residual stream. Reads hidden·2 bytes and writes hidden·4 per row: pure bandwidth.
// ids == nullptr: row r of `table` (rows the host already gathered and uploaded).
#include "cuda_common.cuh"
#include "kernels.h"

namespace seventy::cuda {

__global__ void embeddingKernel(const uint16_t* __restrict__ table, int hidden, const int32_t* __restrict__ ids,
                                float* __restrict__ resid) {
  const int r = blockIdx.x;
  const uint16_t* src = table + int64_t(ids ? ids[r] : r) * hidden;
  float* dst = resid + int64_t(r) * hidden;
  if ((hidden & 7) == 0) {
    for (int i = threadIdx.x * 8; i < hidden; i += blockDim.x * 8) {
      const uint4 v = *reinterpret_cast<const uint4*>(src + i);
      float4 a = make_float4(bf16Lo(v.x), bf16Hi(v.x), bf16Lo(v.y), bf16Hi(v.y));
      float4 b = make_float4(bf16Lo(v.z), bf16Hi(v.z), bf16Lo(v.w), bf16Hi(v.w));
      *reinterpret_cast<float4*>(dst + i) = a;
      *reinterpret_cast<float4*>(dst + i + 4) = b;
    }
  } else {
    for (int i = threadIdx.x; i < hidden; i += blockDim.x) dst[i] = __uint_as_float(uint32_t(src[i]) << 16);
  }
}

cudaError_t embeddingGather(const uint16_t* table, int hidden, const int32_t* ids, int rows, float* resid, cudaStream_t s) {
  if (rows <= 0) return cudaSuccess;
  SEVENTY_LAUNCH(rows, 256, 0, s, embeddingKernel)(table, hidden, ids, resid);
  return cudaGetLastError();
}

}  // namespace seventy::cuda
