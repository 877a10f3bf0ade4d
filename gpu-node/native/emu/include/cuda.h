// seventy-emu stand-in for <cuda.h>.
#pragma once
#include "../emu_runtime.h"
#include "../emu_ptx.h"
