// The elementwise / reduce / conversion spans (ew_isa.h) compiled for AVX-512F (512-bit vectors; only avx512f instructions).
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
#pragma GCC target("avx512f,avx2,fma")
#define KESTREL_VBYTES 64

namespace kestrel {
namespace ew {
namespace avx512 {
#include "simd_math.h"
#include "ew_unary_impl.h"
#include "ew_binary_impl.h"
#include "ew_reduce_impl.h"
#include "ew_convert_impl.h"
#include "ew_table_impl.h"
}  // namespace avx512

const IsaTable& isa_avx512() {
  static const IsaTable t = avx512::build_table("avx512");
  return t;
}

}  // namespace ew
}  // namespace kestrel

#undef KESTREL_VBYTES
#pragma GCC pop_options
