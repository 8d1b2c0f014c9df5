// AVX2/FMA micro-kernel of sgemm (gemm.h) for CPUs without AVX-512: a 6x16 tile of C in 12 ymm
// accumulators, two B vectors and one broadcast per k (the classic Haswell shape of BLIS and
// OpenBLAS, 15 of the 16 registers). Packing transposes 8x8 blocks in registers. Products with few
// rows against a Linear weight (B stored [n, K]: decode steps) take unpacked dot products.
#include <immintrin.h>

#include "gemm.h"
#include "transpose8.h"

#define KESTREL_AVX2 __attribute__((target("avx2,fma")))

namespace kestrel {
namespace gemm_detail {
namespace {

constexpr int kMR = 6, kNR = 16;

// C row segment of up to 16 columns = alpha * acc + beta * C; beta == 0 never reads C.
KESTREL_AVX2 inline void store_row(float* c, __m256 lo, __m256 hi, int nr, float alpha, float beta) {
  __m256 va = _mm256_set1_ps(alpha);
  lo = _mm256_mul_ps(lo, va);
  hi = _mm256_mul_ps(hi, va);
  if (nr == kNR) {
    if (beta != 0.0f) {
      __m256 vb = _mm256_set1_ps(beta);
      lo = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c), lo);
      hi = _mm256_fmadd_ps(vb, _mm256_loadu_ps(c + 8), hi);
    }
    _mm256_storeu_ps(c, lo);
    _mm256_storeu_ps(c + 8, hi);
    return;
  }
  alignas(32) float tmp[kNR];
  _mm256_store_ps(tmp, lo);
  _mm256_store_ps(tmp + 8, hi);
  for (int j = 0; j < nr; j++) c[j] = beta == 0.0f ? tmp[j] : tmp[j] + beta * c[j];
}

KESTREL_AVX2 void kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta,
                         int mr, int nr) {
  __m256 acc0[kMR], acc1[kMR];
#pragma GCC unroll 6
  for (int i = 0; i < kMR; i++) acc0[i] = acc1[i] = _mm256_setzero_ps();
  for (int64_t k = 0; k < kc; k++) {
    __m256 b0 = _mm256_load_ps(b), b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kMR; i++) {
      __m256 ai = _mm256_broadcast_ss(a + i);
      acc0[i] = _mm256_fmadd_ps(ai, b0, acc0[i]);
      acc1[i] = _mm256_fmadd_ps(ai, b1, acc1[i]);
    }
    a += kMR;
    b += kNR;
  }
#pragma GCC unroll 6
  for (int i = 0; i < kMR; i++)
    if (i < mr) store_row(c + i * ldc, acc0[i], acc1[i], nr, alpha, beta);
}


// ---------------------------------------------------------------- packing

// Lanes below n set (all of them for n >= 8): the mask of a tail.
KESTREL_AVX2 inline __m256i tail_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Row k of a micro-panel: mr (6 or 16) values from 8-lane vectors v[0..mr/8]. A 6-wide row is
// stored 8 wide: its two extra lanes land on the next row's first two, which are written after
// it; only the panel's last row (`last`), whose next row is another panel or past the buffer,
// is stored under a mask.
KESTREL_AVX2 inline void store_panel_row(float* d, const __m256* v, int mr, bool last) {
  if (mr == 16) {
    _mm256_storeu_ps(d, v[0]);
    _mm256_storeu_ps(d + 8, v[1]);
  } else if (last) {
    _mm256_maskstore_ps(d, tail_mask(mr), v[0]);
  } else {
    _mm256_storeu_ps(d, v[0]);
  }
}

// Sources contiguous along k (A row-major, B stored [n, K]): each panel's rows are read 8 k at a
// time and transposed in registers; rows past the source are zeros, which is the panel's padding.
KESTREL_AVX2 void pack_transposed(const float* src, int64_t rs, int64_t rows, int64_t kc, int mr, float* dst) {
  for (int64_t p = 0; p < rows; p += mr, dst += mr * kc, src += mr * rs) {
    int n = rows - p < mr ? int(rows - p) : mr;
    for (int64_t k = 0; k < kc; k += 8) {
      __m256i km = tail_mask(kc - k);
      __m256 r[2][8];
#pragma GCC unroll 2
      for (int h = 0; h < 2; h++) {
#pragma GCC unroll 8
        for (int i = 0; i < 8; i++) {
          int row = h * 8 + i;
          r[h][i] = row < n && row < mr ? _mm256_maskload_ps(src + row * rs + k, km) : _mm256_setzero_ps();
        }
        if (h * 8 < mr) transpose8(r[h]);
      }
      int steps = kc - k < 8 ? int(kc - k) : 8;
      for (int i = 0; i < steps; i++) {
        __m256 v[2] = {r[0][i], r[1][i]};
        store_panel_row(dst + (k + i) * mr, v, mr, k + i == kc - 1);
      }
    }
  }
}

// Sources contiguous along the rows (B row-major, A transposed): each k's source row is copied
// into every panel, mr values at a time, masked past the last row.
KESTREL_AVX2 void pack_contiguous(const float* src, int64_t ks, int64_t rows, int64_t kc, int mr, float* dst) {
  int64_t panels = (rows + mr - 1) / mr;
  for (int64_t k = 0; k < kc; k++) {
    const float* s = src + k * ks;
    for (int64_t p = 0; p < panels; p++) {
      int64_t n = rows - p * mr;
      __m256 v[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
      for (int h = 0; h * 8 < mr; h++) {
        int64_t left = n - h * 8, width = mr - h * 8 < 8 ? mr - h * 8 : 8;
        if (left > width) left = width;
        v[h] = left >= 8 ? _mm256_loadu_ps(s + p * mr + h * 8)
                         : _mm256_maskload_ps(s + p * mr + h * 8, tail_mask(left < 0 ? 0 : left));
      }
      store_panel_row(dst + p * mr * kc + k * mr, v, mr, k == kc - 1);
    }
  }
}

// See PackFn in gemm.h: the two memory orders of A and B take the vector routines above (for this
// set's 6-row A and 16-column B panels); any other stride pattern packs with the generic code.
KESTREL_AVX2 void pack(const float* src, int64_t rs, int64_t ks, int64_t rows, int64_t kc, int mr, float* dst) {
  if (mr != 6 && mr != 16) return generic_pack(src, rs, ks, rows, kc, mr, dst);
  if (ks == 1) return pack_transposed(src, rs, rows, kc, mr, dst);
  if (rs == 1) return pack_contiguous(src, ks, rows, kc, mr, dst);
  generic_pack(src, rs, ks, rows, kc, mr, dst);
}

// ---------------------------------------------------------------- small M, B stored [n, K]

KESTREL_AVX2 inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// One k step of dots: 8 columns (masked by m in the K tail) of MM rows of A and NJ rows of B.
template <int MM, int NJ, bool kMasked>
KESTREL_AVX2 inline void dot_step(__m256 (&acc)[MM][NJ], const float* A, int64_t K, const float* B, int64_t ldb, __m256i m) {
  __m256 b[NJ];
#pragma GCC unroll 4
  for (int j = 0; j < NJ; j++) b[j] = kMasked ? _mm256_maskload_ps(B + j * ldb, m) : _mm256_loadu_ps(B + j * ldb);
#pragma GCC unroll 4
  for (int r = 0; r < MM; r++) {
    __m256 a = kMasked ? _mm256_maskload_ps(A + r * K, m) : _mm256_loadu_ps(A + r * K);
#pragma GCC unroll 4
    for (int j = 0; j < NJ; j++) acc[r][j] = _mm256_fmadd_ps(a, b[j], acc[r][j]);
  }
}

// Dot products of NJ rows of B with MM rows of A (contiguous [m, K]), reduced into C; `next`
// (the B rows after these, or null) is prefetched as these stream. As gemm_avx512.cc's dots:
// each C element is summed in the same order whatever m is, so a row's result never depends on
// the rows batched with it.
template <int MM, int NJ>
KESTREL_AVX2 void dots(int64_t K, float alpha, const float* A, const float* B, int64_t ldb, float beta, float* C,
                       int64_t ldc, const float* next) {
  __m256 acc[MM][NJ];
#pragma GCC unroll 4
  for (int r = 0; r < MM; r++)
#pragma GCC unroll 4
    for (int j = 0; j < NJ; j++) acc[r][j] = _mm256_setzero_ps();
  const __m256i all = _mm256_set1_epi32(-1);
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    if (next && k % 16 == 0)  // one 64-byte line per B row every two steps
#pragma GCC unroll 4
      for (int j = 0; j < NJ; j++) _mm_prefetch(reinterpret_cast<const char*>(next + j * ldb + k), _MM_HINT_T0);
    dot_step<MM, NJ, false>(acc, A + k, K, B + k, ldb, all);
  }
  if (k < K) dot_step<MM, NJ, true>(acc, A + k, K, B + k, ldb, tail_mask(K - k));
  float sums[MM][NJ];
  for (int r = 0; r < MM; r++)
    for (int j = 0; j < NJ; j++) sums[r][j] = hsum(acc[r][j]);
  store_sums(sums, alpha, beta, C, ldc);
}

constexpr int kSmallMGroup = 2;  // 4 x 2 accumulators, two B vectors and one A vector of the 16 ymm
constexpr int kSmallMWide = 0;   // 8 rows' accumulators would not fit in 16 ymm
#define KESTREL_SMALL_M_TARGET KESTREL_AVX2
#include "gemm_small_m_nt.inc"
#undef KESTREL_SMALL_M_TARGET

// Only transB comes here: small_m_max = 0 sends B row-major to the packed path.
KESTREL_AVX2 void small_m(bool, int64_t m, int64_t n, int64_t K, float alpha, const float* A, const float* B, int64_t ldb,
                          float beta, float* C, int64_t ldc) {
  small_m_nt(m, n, K, alpha, A, B, ldb, beta, C, ldc);
}

}  // namespace

const KernelSet* avx2_kernels() {
  // kc = 256: the 6 x kc A micro-panel (6 KB) stays in L1 beside the streaming 16 x kc B
  // micro-panel (16 KB); nc = 1024: the kc x nc B block (1 MB) stays in L2; mc as for AVX-512.
  // Up to 32 rows against a Linear weight go unpacked (small_m), as on AVX-512.
  static const KernelSet set = {"avx2", kMR, kNR, 2048, 256, 1024, kernel, pack, small_m, 0, 32};
  return &set;
}

}  // namespace gemm_detail
}  // namespace kestrel
