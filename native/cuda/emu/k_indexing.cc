// The emulator's build of kernels/indexing.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/indexing.cu"
