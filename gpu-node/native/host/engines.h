// Backend factories (internal). The CUDA one exists only in a CUDA build.
#pragma once

#include <memory>

#include "seventy/engine.h"

namespace seventy {

std::unique_ptr<Engine> makeCpuEngine(const EngineOptions& o);
#if SEVENTY_WITH_CUDA
std::unique_ptr<Engine> makeCudaEngine(const EngineOptions& o);
DeviceInfo probeCudaDevice();
#endif

}  // namespace seventy
