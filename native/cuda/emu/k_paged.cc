// The emulator's build of kernels/paged.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/paged.cu"
