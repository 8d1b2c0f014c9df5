// The AVX-512 BF16 path of the half-precision GEMM (gemm_half.h): vdpbf16ps multiplies pairs of
// bfloat16 and adds both products to a float32 lane (acc += a[2i] b[2i] + a[2i+1] b[2i+1]; each
// product of two bf16 values is exact in float32), so panels hold k in pairs: a 32-bit word per
// (row, k-pair). The micro-kernel is sgemm's AVX-512 shape (gemm_avx512.cc), 14 rows x 32 columns
// of C in 28 zmm accumulators, with one k-pair (two multiply-adds per lane) per instruction.
// vdpbf16ps ignores MXCSR: subnormal bf16 inputs count as zero and results round to nearest even.
#include <immintrin.h>

#include <algorithm>

// GCC 12 warns that the masked-load intrinsics read an uninitialized pass-through; GCC PR 105593.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "bf16_round.h"
#include "gemm_half.h"
#include "kernel_api.h"
#include "transpose16.h"

#define KESTREL_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

namespace kestrel {
namespace gemm_detail {
namespace {

constexpr int kMR = 14, kNR = 32;

KESTREL_BF16 inline __mmask16 mask16(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1);
}
KESTREL_BF16 inline __mmask32 mask32(int64_t n) {
  return n >= 32 ? __mmask32(0xffffffffu) : n <= 0 ? __mmask32(0) : __mmask32((1u << n) - 1);
}

// Rows contiguous along k (A row-major, B transposed): 16 rows x 16 k-pairs per load, one
// 16x16 transpose of 32-bit words, so each k-pair's row of the panel is stored at once.
KESTREL_BF16 void pack_pairs_k_contiguous(const uint16_t* src, int64_t rs, int n, int64_t kc, int64_t kcp, int mr,
                                          uint32_t* dst) {
  int64_t pairs = kcp / 2;
  for (int r0 = 0; r0 < mr; r0 += 16) {
    int valid = std::clamp(n - r0, 0, 16);  // rows with data; the panel's other rows get zeros
    __mmask16 sm = mask16(mr - r0);
    for (int64_t kp0 = 0; kp0 < pairs; kp0 += 16) {
      int64_t k0 = 2 * kp0;
      __mmask32 lm = mask32(kc - k0);  // never reads past k = kc (the odd tail's partner is zero)
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++)
        r[i] = i < valid ? _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(lm, src + (r0 + i) * rs + k0)) : _mm512_setzero_ps();
      transpose16(r);
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++)
        if (kp0 + i < pairs) _mm512_mask_storeu_ps(reinterpret_cast<float*>(dst + (kp0 + i) * mr + r0), sm, r[i]);
    }
  }
}

// Rows contiguous along the rows (B row-major, A transposed): k rows 2kp and 2kp+1 interleave,
// 16 panel rows at a time (widen to 32 bits, shift the second into the high half).
KESTREL_BF16 void pack_pairs_rows_contiguous(const uint16_t* src, int64_t ks, int n, int64_t kc, int64_t kcp, int mr,
                                             uint32_t* dst) {
  for (int64_t kp = 0; kp < kcp / 2; kp++) {
    int64_t k = 2 * kp;
    for (int c0 = 0; c0 < mr; c0 += 16) {
      __mmask16 lm = mask16(n - c0);
      __m256i lo = k < kc ? _mm256_maskz_loadu_epi16(lm, src + k * ks + c0) : _mm256_setzero_si256();
      __m256i hi = k + 1 < kc ? _mm256_maskz_loadu_epi16(lm, src + (k + 1) * ks + c0) : _mm256_setzero_si256();
      __m512i w = _mm512_or_si512(_mm512_cvtepu16_epi32(lo), _mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16));
      _mm512_mask_storeu_epi32(dst + kp * mr + c0, mask16(mr - c0), w);
    }
  }
}

template <int MR>
KESTREL_BF16 void kernel(int64_t kcp, const void* av, const void* bv, float* c, int64_t ldc, bool add, int mr, int nr) {
  const uint32_t* a = static_cast<const uint32_t*>(av);
  const uint16_t* b = static_cast<const uint16_t*>(bv);
  __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) acc0[i] = acc1[i] = _mm512_setzero_ps();
  for (int64_t kp = 0; kp < kcp / 2; kp++) {
    __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 32);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
      __m512bh ai = (__m512bh)_mm512_set1_epi32(int(a[i]));
      acc0[i] = _mm512_dpbf16_ps(acc0[i], ai, b0);
      acc1[i] = _mm512_dpbf16_ps(acc1[i], ai, b1);
    }
    a += MR;
    b += 2 * kNR;
  }
  __mmask16 m0 = mask16(nr), m1 = mask16(nr - 16);
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) {
    if (i >= mr) break;
    float* ci = c + i * ldc;
    __m512 r0 = acc0[i], r1 = acc1[i];
    if (add) {
      r0 = _mm512_add_ps(r0, _mm512_maskz_loadu_ps(m0, ci));
      r1 = _mm512_add_ps(r1, _mm512_maskz_loadu_ps(m1, ci + 16));
    }
    _mm512_mask_storeu_ps(ci, m0, r0);
    _mm512_mask_storeu_ps(ci + 16, m1, r1);
  }
}

// Any other layout, one value at a time: value(r, k) for the n rows with data, zeros elsewhere.
template <class Value>
void pack_pairs_strided(int n, int64_t kc, int64_t kcp, int mr, uint32_t* dst, Value value) {
  for (int64_t kp = 0; kp < kcp / 2; kp++)
    for (int r = 0; r < mr; r++) {
      int64_t k = 2 * kp;
      uint32_t lo = r < n && k < kc ? value(r, k) : 0, hi = r < n && k + 1 < kc ? value(r, k + 1) : 0;
      dst[kp * mr + r] = lo | (hi << 16);
    }
}

}  // namespace

// See gemm_half.h. bf16 only (fp16 goes through the convert path).
KESTREL_BF16 void pack_pairs(const uint16_t* src, int64_t rs, int64_t ks, int64_t rows, int64_t kc, int64_t kcp, int mr,
                             bool, void* dstv) {
  uint32_t* dst = static_cast<uint32_t*>(dstv);
  int64_t words = int64_t(mr) * (kcp / 2);
  for (int64_t p = 0; p < rows; p += mr, dst += words) {
    int n = int(std::min<int64_t>(mr, rows - p));
    const uint16_t* s = src + p * rs;
    if (ks == 1) {
      pack_pairs_k_contiguous(s, rs, n, kc, kcp, mr, dst);
    } else if (rs == 1) {
      pack_pairs_rows_contiguous(s, ks, n, kc, kcp, mr, dst);
    } else {
      pack_pairs_strided(n, kc, kcp, mr, dst, [&](int r, int64_t k) { return s[r * rs + k * ks]; });
    }
  }
}

namespace {

// As pack_pairs_k_contiguous: per row 32 floats (16 k-pairs) are loaded, rounded and narrowed to
// one register of pairs before the same transpose.
KESTREL_BF16 void pack_float_k_contiguous(const float* src, int64_t rs, int n, int64_t kc, int64_t kcp, int mr, uint32_t* dst) {
  int64_t pairs = kcp / 2;
  for (int r0 = 0; r0 < mr; r0 += 16) {
    int valid = std::clamp(n - r0, 0, 16);
    __mmask16 sm = mask16(mr - r0);
    for (int64_t kp0 = 0; kp0 < pairs; kp0 += 16) {
      int64_t k0 = 2 * kp0;
      __mmask16 m0 = mask16(kc - k0), m1 = mask16(kc - k0 - 16);
      __m512 r[16];
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++) {
        if (i >= valid) {
          r[i] = _mm512_setzero_ps();
          continue;
        }
        const float* s = src + (r0 + i) * rs + k0;
        __m256i lo = round_bf16x16(_mm512_maskz_loadu_ps(m0, s));
        __m256i hi = round_bf16x16(_mm512_maskz_loadu_ps(m1, s + 16));
        r[i] = _mm512_castsi512_ps(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
      }
      transpose16(r);
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++)
        if (kp0 + i < pairs) _mm512_mask_storeu_ps(reinterpret_cast<float*>(dst + (kp0 + i) * mr + r0), sm, r[i]);
    }
  }
}

// As pack_pairs_rows_contiguous: k rows 2kp and 2kp+1 rounded and interleaved, 16 panel rows at a time.
KESTREL_BF16 void pack_float_rows_contiguous(const float* src, int64_t ks, int n, int64_t kc, int64_t kcp, int mr, uint32_t* dst) {
  for (int64_t kp = 0; kp < kcp / 2; kp++) {
    int64_t k = 2 * kp;
    for (int c0 = 0; c0 < mr; c0 += 16) {
      __mmask16 lm = mask16(n - c0);
      __m512i lo = k < kc ? round_bf16_lanes(_mm512_maskz_loadu_ps(lm, src + k * ks + c0)) : _mm512_setzero_si512();
      __m512i hi = k + 1 < kc ? round_bf16_lanes(_mm512_maskz_loadu_ps(lm, src + (k + 1) * ks + c0)) : _mm512_setzero_si512();
      _mm512_mask_storeu_epi32(dst + kp * mr + c0, mask16(mr - c0), _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
    }
  }
}

}  // namespace

// See gemm_half.h.
KESTREL_BF16 void pack_pairs_float(const float* src, int64_t rs, int64_t ks, int64_t rows, int64_t kc, int64_t kcp, int mr,
                                   void* dstv) {
  uint32_t* dst = static_cast<uint32_t*>(dstv);
  int64_t words = int64_t(mr) * (kcp / 2);
  for (int64_t p = 0; p < rows; p += mr, dst += words) {
    int n = int(std::min<int64_t>(mr, rows - p));
    const float* s = src + p * rs;
    if (ks == 1) {
      pack_float_k_contiguous(s, rs, n, kc, kcp, mr, dst);
    } else if (rs == 1) {
      pack_float_rows_contiguous(s, ks, n, kc, kcp, mr, dst);
    } else {
      pack_pairs_strided(n, kc, kcp, mr, dst, [&](int r, int64_t k) { return f32_to_bf16(s[r * rs + k * ks]); });
    }
  }
}

const HalfPath* avx512bf16_path() {
  // kc = 512 k (256 pairs): the 14 x kc A micro-panel (14 KB) and a streaming 32 x kc B
  // micro-panel (32 KB) share the 48 KB L1, the same bytes as sgemm's float kc = 256; nc = 1024:
  // the kc x nc B block (1 MB) stays in L2; mc as sgemm's.
  static const HalfPath path = {"avx512bf16", kMR, kNR, 2, 2048, 512, 1024, 2,
                                pack_pairs, pack_pairs, kernel<kMR>, nullptr, nullptr, pack_pairs_float};
  return &path;
}

}  // namespace gemm_detail
}  // namespace kestrel
