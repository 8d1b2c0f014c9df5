// The elementwise / reduce / conversion spans (ew_isa.h) compiled for AVX2 + FMA.
// Every header with code of its own is included before the target pragma, so that only this
// file's namespace is compiled for the wider ISA (no inline function leaks into generic code).
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "ew_isa.h"
#include "transpose8.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define KESTREL_VBYTES 32

namespace kestrel {
namespace ew {
namespace avx2 {
#include "simd_math.h"
#include "ew_unary_impl.h"
#include "ew_binary_impl.h"
#include "ew_reduce_impl.h"
#include "ew_convert_impl.h"
#include "ew_table_impl.h"
}  // namespace avx2

const IsaTable& isa_avx2() {
  static const IsaTable t = avx2::build_table("avx2");
  return t;
}

}  // namespace ew
}  // namespace kestrel

#undef KESTREL_VBYTES
#pragma GCC pop_options
