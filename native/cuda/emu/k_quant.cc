// The emulator's build of kernels/quant.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/quant.cu"
