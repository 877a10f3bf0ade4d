// seventy-emu stand-in for <cuda_runtime.h>.
#pragma once
#include "../emu_runtime.h"
#include "../emu_ptx.h"
