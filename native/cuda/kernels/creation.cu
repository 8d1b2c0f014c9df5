// fill, arange and random (Philox draws equal to src/tensor/rng.ts element for element).
#include "common.cuh"

using namespace kst;

template <class T> KFN void fill_impl(T* out, const Strided& s, i64 n, double value) {
  T v = from_double<T>(value);
  KST_FOR(i, n) out[offset_of(s, i)] = v;
}

template <class T> KFN void arange_impl(T* out, i64 n, double start, double step) {
  KST_FOR(i, n) out[i] = from_double<T>(start + mul_rn(double(i), step));  // no fused multiply-add: as the CPU
}

// uniform: word i%4 of block counter + i/4; normal: words 2(i%2), 2(i%2)+1 of block counter + i/2,
// Box-Muller's cos branch, in double as the CPU computes it.
template <class T> KFN void random_impl(T* out, i64 n, int normal, u32 k0, u32 k1, u64 counter) {
  KST_FOR(i, n) {
    double v;
    if (!normal) {
      v = double(philox_uniform(k0, k1, counter, u64(i)));
    } else {
      Philox4 b = philox(k0, k1, counter + u64(i) / 2);
      int j = int(i % 2);
      double u1 = double((b.w[2 * j] >> 8) + 1) * (1.0 / 16777216.0);
      double u2 = double(b.w[2 * j + 1] >> 8) * (1.0 / 16777216.0);
      v = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    }
    out[i] = from_double<T>(v);
  }
}

#define KST_CREATION(sfx, T)                                                                     \
  KERNEL(fill_##sfx, (T* out, Strided s, i64 n, double value)) { fill_impl(out, s, n, value); } \
  KERNEL(arange_##sfx, (T* out, i64 n, double start, double step)) { arange_impl(out, n, start, step); }

KST_CREATION(f32, float)
KST_CREATION(f64, double)
KST_CREATION(f16, f16)
KST_CREATION(bf16, bf16)
KST_CREATION(i32, i32)
KST_CREATION(i64, i64)
KST_CREATION(i8, i8)
KST_CREATION(u8, u8)
KST_CREATION(bool, boolean)

#define KST_RANDOM(sfx, T) \
  KERNEL(random_##sfx, (T* out, i64 n, i32 normal, u32 k0, u32 k1, u64 counter)) { random_impl(out, n, normal, k0, k1, counter); }

KST_RANDOM(f32, float)
KST_RANDOM(f64, double)
KST_RANDOM(f16, f16)
KST_RANDOM(bf16, bf16)
