// Asks the CUDA runtime (statically linked) what device there is. With no driver this reports
// cudaErrorInsufficientDriver / cudaErrorNoDevice as text; nothing here aborts.
#include <cuda_runtime.h>

#include <string>

#include "engines.h"

namespace seventy {

DeviceInfo probeCudaDevice() {
  DeviceInfo d;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    d.reason = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return d;
  }
  if (n == 0) {
    d.reason = "no CUDA device";
    return d;
  }
  cudaDeviceProp p{};
  if ((e = cudaGetDeviceProperties(&p, 0)) != cudaSuccess) {
    d.reason = std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(e);
    return d;
  }
  d.name = p.name;
  d.computeCapability = p.major * 10 + p.minor;
  d.multiprocessors = p.multiProcessorCount;
  d.totalMemory = p.totalGlobalMem;
  size_t freeB = 0, totalB = 0;
  if (cudaMemGetInfo(&freeB, &totalB) == cudaSuccess) d.freeMemory = freeB;
  // The fatbinary holds sm_80 and sm_90a machine code only (no PTX): sm_8x runs the sm_80 code,
  // sm_90 the sm_90a code; anything else has no kernels.
  if (p.major == 8 || (p.major == 9 && p.minor == 0)) {
    d.usable = true;
  } else {
    d.reason = "no kernels built for sm_" + std::to_string(d.computeCapability) + " (built for sm_80 and sm_90a)";
  }
  return d;
}

}  // namespace seventy
