// seventy-emu stand-in for <cuda_fp8.h>.
#pragma once
#include "../emu_fp.h"
