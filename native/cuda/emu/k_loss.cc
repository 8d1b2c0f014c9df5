// The emulator's build of kernels/loss.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/loss.cu"
