// Element conversions shared by fill, arange, random and copy, with the reference backend's
// rules (src/backend/ref/storage.ts): values pass through double (exact for every dtype but
// int64, which rounds as Number(bigint) does); float16/bfloat16 round from float32 to nearest
// even; float to integer truncates toward zero with NaN -> 0 and saturates out of range (never
// UB); anything to bool is x != 0; integer to integer wraps (two's complement).
#pragma once
#include <cstdint>
#include <limits>
#include <type_traits>

#include "kernel_api.h"

namespace kestrel {

struct f16_t { uint16_t bits; };
struct bf16_t { uint16_t bits; };
struct bool_t { uint8_t v; };

template <class T> inline double to_double(T v) { return double(v); }
inline double to_double(f16_t v) { return f16_to_f32(v.bits); }
inline double to_double(bf16_t v) { return bf16_to_f32(v.bits); }
inline double to_double(bool_t v) { return double(v.v); }

template <class T> inline T from_double(double v) {
  static_assert(std::is_integral<T>::value, "integer storage");
  if (!(v == v)) return 0;
  if (v <= double(std::numeric_limits<T>::min())) return std::numeric_limits<T>::min();
  if (v >= double(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return T(v);
}
template <> inline float from_double<float>(double v) { return float(v); }
template <> inline double from_double<double>(double v) { return v; }
template <> inline f16_t from_double<f16_t>(double v) { return f16_t{f32_to_f16(float(v))}; }
template <> inline bf16_t from_double<bf16_t>(double v) { return bf16_t{f32_to_bf16(float(v))}; }
template <> inline bool_t from_double<bool_t>(double v) { return bool_t{uint8_t(v != 0)}; }

template <class T> struct IsIntStorage : std::is_integral<T> {};
template <> struct IsIntStorage<bool_t> : std::true_type {};

template <class T> inline T int_raw(T v) { return v; }
inline uint8_t int_raw(bool_t v) { return v.v; }

// One element of S to D.
template <class S, class D> inline D cast(S v) {
  if constexpr (std::is_same<S, D>::value) {
    return v;
  } else if constexpr (std::is_same<D, bool_t>::value) {
    if constexpr (IsIntStorage<S>::value) return bool_t{uint8_t(int_raw(v) != 0)};
    else return bool_t{uint8_t(to_double(v) != 0)};
  } else if constexpr (IsIntStorage<S>::value && std::is_integral<D>::value) {
    return D(int_raw(v));  // wraps
  } else {
    return from_double<D>(to_double(v));
  }
}

// Calls f(T{}) with T the storage type of dtype.
template <class F> inline void with_storage_type(int dtype, F&& f) {
  switch (dtype) {
    case F32: f(float{}); return;
    case F64: f(double{}); return;
    case F16: f(f16_t{}); return;
    case BF16: f(bf16_t{}); return;
    case I32: f(int32_t{}); return;
    case I64: f(int64_t{}); return;
    case I8: f(int8_t{}); return;
    case U8: f(uint8_t{}); return;
    case BOOL: f(bool_t{}); return;
  }
  throw KernelError("unknown dtype code " + std::to_string(dtype));
}

}  // namespace kestrel
