// The in-register 16x16 transpose of 32-bit elements that the AVX-512 packing routines share
// (sgemm's float panels in gemm_avx512.cc, the bf16 k-pair panels in gemm_bf16.cc, where each
// 32-bit element is a pair of bfloat16). Include only from files compiled with AVX-512 target
// attributes on their functions; this one carries its own.
#pragma once
#include <immintrin.h>

namespace kestrel {
namespace gemm_detail {

// In-place transpose of a 16x16 block held in 16 registers (unpack, then two lane shuffles).
__attribute__((target("avx512f"), always_inline)) inline void transpose16(__m512 r[16]) {
  __m512 t[16];
#pragma GCC unroll 8
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 16; i += 4) {
#pragma GCC unroll 2
    for (int j = 0; j < 2; j++) {
      __m512d x = _mm512_castps_pd(t[i + j]), y = _mm512_castps_pd(t[i + j + 2]);
      r[i + 2 * j] = _mm512_castpd_ps(_mm512_unpacklo_pd(x, y));
      r[i + 2 * j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(x, y));
    }
  }
  // Now r[4q + s], 128-bit lane L, holds column 4L + s of rows 4q..4q+3: gather the lanes.
#pragma GCC unroll 8
  for (int i = 0; i < 8; i++) {
    int lo = (i / 4) * 8 + (i % 4), hi = lo + 4;
    t[i] = _mm512_shuffle_f32x4(r[lo], r[hi], 0x88);
    t[i + 8] = _mm512_shuffle_f32x4(r[lo], r[hi], 0xdd);
  }
#pragma GCC unroll 4
  for (int i = 0; i < 4; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 4], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 4], 0xdd);
    r[i + 4] = _mm512_shuffle_f32x4(t[i + 8], t[i + 12], 0x88);
    r[i + 12] = _mm512_shuffle_f32x4(t[i + 8], t[i + 12], 0xdd);
  }
}

}  // namespace gemm_detail
}  // namespace kestrel
