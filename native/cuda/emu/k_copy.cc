// The emulator's build of kernels/copy.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/copy.cu"
