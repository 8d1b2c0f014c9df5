// The emulator's build of kernels/attention_decode.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/attention_decode.cu"
