// Small device helpers shared by the kernels (internal; never included by include/).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#ifndef SEVENTY_EMU
#include <cstdio>
#endif

#include "kernels.h"

// Launches and dynamic shared memory are spelled through two macros, so that the same source also
// compiles under the CPU emulator (emu/, which defines them first):
//   SEVENTY_LAUNCH(grid, block, smem, stream, kernel)(args...)   ≡ kernel<<<grid, block, smem, stream>>>(args...)
//   SEVENTY_DYNAMIC_SMEM(type, name);                              ≡ extern __shared__ type name[];
// With SEVENTY_CUDA_SYNC_DEBUG=1 in the environment (syncDebugEnabled, kernels.h) every launch outside a
// graph capture is followed by a stream synchronization, and a failing kernel is named (with the file:line
// of its launch) before the process aborts.
#ifndef SEVENTY_LAUNCH
#define SEVENTY_LAUNCH(grid, block, smem, stream, ...) \
  ::seventy::cuda::LaunchDebug{#__VA_ARGS__, __FILE__, __LINE__, (stream)}, __VA_ARGS__<<<grid, block, smem, stream>>>
#endif
#ifndef SEVENTY_DYNAMIC_SMEM
#define SEVENTY_DYNAMIC_SMEM(type, name) extern __shared__ type name[]
#endif

namespace seventy::cuda {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warpSum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

__device__ __forceinline__ float warpMax(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

__device__ __forceinline__ float bf16Lo(uint32_t u) { return __uint_as_float(u << 16); }
__device__ __forceinline__ float bf16Hi(uint32_t u) { return __uint_as_float(u & 0xffff0000u); }

__device__ __forceinline__ uint32_t packBf16x2(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&h);
}

__device__ __forceinline__ uint16_t toBf16Bits(float f) {
  __nv_bfloat16 h = __float2bfloat16_rn(f);
  return *reinterpret_cast<uint16_t*>(&h);
}

// Launch-error check for launchers: they return the error, never exit.
inline cudaError_t lastLaunchError() { return cudaGetLastError(); }

#ifndef SEVENTY_EMU
// Lives until the end of the launch's full expression, so its destructor runs right after the launch.
struct LaunchDebug {
  const char* kernel;
  const char* file;
  int line;
  cudaStream_t stream;
  ~LaunchDebug() {
    if (!syncDebugEnabled()) return;
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    if (cudaStreamIsCapturing(stream, &cs) != cudaSuccess || cs != cudaStreamCaptureStatusNone) return;  // graphs sync on replay
    cudaError_t e = cudaPeekAtLastError();
    if (e == cudaSuccess) e = cudaStreamSynchronize(stream);
    if (e != cudaSuccess) {
      std::fprintf(stderr, "SEVENTY_CUDA_SYNC_DEBUG: kernel %s launched at %s:%d failed: %s (%s)\n", kernel, file, line, cudaGetErrorName(e),
                   cudaGetErrorString(e));
      std::abort();
    }
  }
};
#endif

}  // namespace seventy::cuda
