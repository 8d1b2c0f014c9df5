// The emulator's build of kernels/norms.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/norms.cu"
