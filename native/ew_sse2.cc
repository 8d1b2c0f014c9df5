// The elementwise / reduce / conversion spans (ew_isa.h) compiled for the x86-64 baseline (SSE2), the level KESTREL_SIMD=scalar selects.
// Every header with code of its own is included before the target pragma, so that only this
// file's namespace is compiled for the wider ISA (no inline function leaks into generic code).
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "ew_isa.h"

#pragma GCC push_options

#define KESTREL_VBYTES 16

namespace kestrel {
namespace ew {
namespace sse2 {
#include "simd_math.h"
#include "ew_unary_impl.h"
#include "ew_binary_impl.h"
#include "ew_reduce_impl.h"
#include "ew_convert_impl.h"
#include "ew_table_impl.h"
}  // namespace sse2

const IsaTable& isa_sse2() {
  static const IsaTable t = sse2::build_table("sse2");
  return t;
}

}  // namespace ew
}  // namespace kestrel

#undef KESTREL_VBYTES
#pragma GCC pop_options
