// The emulator's build of kernels/attention_tc_dq.cu (one wrapper per kernel file; see prelude.h).
#include "prelude.h"
#include "../kernels/attention_tc_dq.cu"
