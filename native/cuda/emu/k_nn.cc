// The emulator's build of kernels/nn.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/nn.cu"
