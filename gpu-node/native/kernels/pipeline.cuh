// Asynchronous copies (cp.async, sm_80+) and programmatic dependent launch (PDL, sm_90+): the device
// helpers and the launch spelling the streaming kernels use. Under SEVENTY_EMU the PTX is replaced by
// emu/emu_ptx.h's stand-ins, which defer each copy to its wait and check the reads in between.
#pragma once

#include "cuda_common.cuh"

// SEVENTY_LAUNCH_PDL(grid, block, smem, stream, kernel)(args...): a launch with
// cudaLaunchAttributeProgrammaticStreamSerialization when pdlEnabled(), so the kernel may start while the
// previous kernel in the stream drains; it must call pdlWait() before touching anything that kernel
// writes or reads. Evaluates to the launch's cudaError_t.
#ifndef SEVENTY_LAUNCH_PDL
#define SEVENTY_LAUNCH_PDL(grid, block, smem, stream, ...) \
  ::seventy::cuda::LaunchDebug{#__VA_ARGS__, __FILE__, __LINE__, (stream)}, ::seventy::cuda::PdlLaunch{__VA_ARGS__, dim3(grid), dim3(block), size_t(smem), (stream)}
#endif

namespace seventy::cuda {

// PDL needs sm_90 (griddepcontrol); SEVENTY_PDL=0 turns it off (a comparison in the device check).
inline bool pdlEnabled() {
  static const bool on = [] {
    const char* v = std::getenv("SEVENTY_PDL");
    if (v && *v == '0') return false;
    int dev = 0;
    cudaDeviceProp p;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaGetDeviceProperties(&p, dev) != cudaSuccess) return false;
    return p.major >= 9;
  }();
  return on;
}

#ifndef SEVENTY_EMU
template <class... P>
struct PdlLaunch {
  void (*kernel)(P...);
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  template <class... A>
  cudaError_t operator()(A&&... a) const {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = pdlEnabled() ? 1 : 0;
    cfg.attrs = attr;
    cfg.numAttrs = 1;
    return cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(a)...);
  }
};
template <class... P>
PdlLaunch(void (*)(P...), dim3, dim3, size_t, cudaStream_t) -> PdlLaunch<P...>;
#endif

// griddepcontrol.wait: the previous kernel has completed and its writes are visible (no-op without PDL).
__device__ __forceinline__ void pdlWait() {
#ifdef SEVENTY_EMU
  emu::ptx::griddepcontrol_wait();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// griddepcontrol.launch_dependents: the next programmatic launch may start its blocks (they wait in pdlWait).
__device__ __forceinline__ void pdlLaunchDependents() {
#ifdef SEVENTY_EMU
  emu::ptx::griddepcontrol_launch_dependents();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

// 16 bytes global → shared, bypassing L1 (.cg); srcBytes < 16 zero-fills the rest (0: no global read).
__device__ __forceinline__ void cpAsync16(void* smem, const void* gmem, int srcBytes = 16) {
#ifdef SEVENTY_EMU
  emu::ptx::cp_async_shared_global<16>(smem, gmem, srcBytes);
#else
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(srcBytes) : "memory");
#endif
}

// 8 bytes global → shared through L1 (.ca: the only cp.async of fewer than 16 bytes).
__device__ __forceinline__ void cpAsync8(void* smem, const void* gmem, int srcBytes = 8) {
#ifdef SEVENTY_EMU
  emu::ptx::cp_async_shared_global<8>(smem, gmem, srcBytes);
#else
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s), "l"(gmem), "r"(srcBytes) : "memory");
#endif
}

// 4 bytes global → shared through L1 (.ca).
__device__ __forceinline__ void cpAsync4(void* smem, const void* gmem, int srcBytes = 4) {
#ifdef SEVENTY_EMU
  emu::ptx::cp_async_shared_global<4>(smem, gmem, srcBytes);
#else
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(srcBytes) : "memory");
#endif
}

__device__ __forceinline__ void cpAsyncCommit() {
#ifdef SEVENTY_EMU
  emu::ptx::cp_async_commit_group();
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}

// Waits until at most N of this thread's committed groups are pending.
template <int N>
__device__ __forceinline__ void cpAsyncWait() {
#ifdef SEVENTY_EMU
  emu::ptx::cp_async_wait_group(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

}  // namespace seventy::cuda
