// The emulator's build of kernels/mma_check.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/mma_check.cu"
