// The in-register 8x8 transpose of 32-bit elements that AVX2 code shares (sgemm's panel packing in
// gemm_avx2.cc, the float transposing copy in ew_convert_impl.h): the AVX2 sibling of
// transpose16.h. It carries its own target attribute, so it may be included before a file's target
// pragma; call it only from AVX2 (or wider) code.
#pragma once
#include <immintrin.h>

namespace kestrel {

// In-place transpose of an 8x8 block held in 8 registers: unpack pairs, shuffle quads, then swap
// the 128-bit halves.
__attribute__((target("avx2"), always_inline)) inline void transpose8(__m256 r[8]) {
  __m256 t[8];
#pragma GCC unroll 4
  for (int q = 0; q < 8; q += 2) {
    t[q] = _mm256_unpacklo_ps(r[q], r[q + 1]);
    t[q + 1] = _mm256_unpackhi_ps(r[q], r[q + 1]);
  }
#pragma GCC unroll 2
  for (int q = 0; q < 8; q += 4) {
    r[q] = _mm256_shuffle_ps(t[q], t[q + 2], 0x44);
    r[q + 1] = _mm256_shuffle_ps(t[q], t[q + 2], 0xee);
    r[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44);
    r[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xee);
  }
#pragma GCC unroll 4
  for (int q = 0; q < 4; q++) {
    t[q] = _mm256_permute2f128_ps(r[q], r[q + 4], 0x20);
    t[q + 4] = _mm256_permute2f128_ps(r[q], r[q + 4], 0x31);
  }
#pragma GCC unroll 8
  for (int q = 0; q < 8; q++) r[q] = t[q];
}

}  // namespace kestrel
