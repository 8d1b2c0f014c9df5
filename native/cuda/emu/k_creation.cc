// The emulator's build of kernels/creation.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/creation.cu"
