// Float32 to bfloat16 rounding in AVX-512 registers, as runtime.cc's f32_to_bf16 does it (nearest
// even; a NaN quieted with its sign kept), for the kernels that round while they pack or decode
// (gemm_bf16.cc's float32 B panels, quant.cc's weights decoded straight to bf16). Include only from
// files compiled with AVX-512 target attributes on their functions; this one carries its own.
#pragma once
#include <immintrin.h>

namespace kestrel {

// 16 floats rounded to bf16, each in the low half of its 32-bit lane.
__attribute__((target("avx512f"), always_inline)) inline __m512i round_bf16_lanes(__m512 f) {
  __m512i u = _mm512_castps_si512(f);
  __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1))));
  __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
  return _mm512_mask_mov_epi32(_mm512_srli_epi32(r, 16), nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x40)));
}

// The same 16 values packed as 16 bfloat16.
__attribute__((target("avx512f"), always_inline)) inline __m256i round_bf16x16(__m512 f) {
  return _mm512_cvtepi32_epi16(round_bf16_lanes(f));
}

}  // namespace kestrel
