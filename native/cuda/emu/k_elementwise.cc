// The emulator's build of kernels/elementwise.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/elementwise.cu"
