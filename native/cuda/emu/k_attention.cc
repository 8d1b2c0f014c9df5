// The emulator's build of kernels/attention.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/attention.cu"
