// The emulator's build of kernels/reduce.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/reduce.cu"
