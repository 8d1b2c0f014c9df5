// The emulator's build of kernels/optim.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/optim.cu"
