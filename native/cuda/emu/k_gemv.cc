// The emulator's build of kernels/gemv.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/gemv.cu"
