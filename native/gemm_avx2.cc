// AVX2/FMA micro-kernel of sgemm (gemm.h) for CPUs without AVX-512: a 6x16 tile of C in 12 ymm
// accumulators, two B vectors and one broadcast per k (the classic Haswell shape of BLIS and
// OpenBLAS, 15 of the 16 registers). Packing uses the generic code in gemm.cc. Products with few
// rows against a Linear weight (B stored [n, K]: decode steps) take unpacked dot products.
#include <immintrin.h>

#include "gemm.h"

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

// ---------------------------------------------------------------- small M, B stored [n, K]

// Lanes below n (n < 8) set: the mask of a K tail.
KESTREL_AVX2 inline __m256i tail_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

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
  static const KernelSet set = {"avx2", kMR, kNR, 2048, 256, 1024, kernel, nullptr, small_m, 0, 32};
  return &set;
}

}  // namespace gemm_detail
}  // namespace kestrel
