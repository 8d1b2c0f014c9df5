// AVX-512 pieces of sgemm (gemm.h): the 14x32 micro-kernel, packing with in-register 16x16
// transposes, and the unpacked small-M path for decode-shaped products.
// The micro-kernel keeps a 14x32 tile of C in 28 zmm accumulators; per k it loads two vectors of
// the packed B panel and broadcasts 14 values of the packed A panel straight from memory into
// the FMAs (the BLIS SKX kernel's shape, transposed for row-major C). Every function carries its
// own target attribute so that nothing AVX-512 leaks into code that runs on older CPUs.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

// GCC 12 warns that the masked-load intrinsics read an uninitialized __Y (their
// _mm512_undefined_ps() pass-through); a known false positive, GCC PR 105593.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "gemm.h"
#include "transpose16.h"

#define KESTREL_AVX512 __attribute__((target("avx512f")))

namespace kestrel {
namespace gemm_detail {
namespace {

constexpr int kNR = 32;

KESTREL_AVX512 inline __mmask16 tail_mask(int64_t n) {
  return n >= 16 ? __mmask16(0xffff) : __mmask16((1u << n) - 1);
}

// C row segment = alpha * acc + beta * C under a column mask; beta == 0 never reads C.
KESTREL_AVX512 inline void store_row(float* c, __m512 acc, __mmask16 m, __m512 va, float beta) {
  __m512 r = _mm512_mul_ps(acc, va);
  if (beta == 1.0f) r = _mm512_add_ps(r, _mm512_maskz_loadu_ps(m, c));
  else if (beta != 0.0f) r = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, c), r);
  _mm512_mask_storeu_ps(c, m, r);
}

template <int MR>
KESTREL_AVX512 void kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha,
                           float beta, int mr, int nr) {
  __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) acc0[i] = acc1[i] = _mm512_setzero_ps();
  // Touch the C tile early so its lines arrive while the k loop runs.
  for (int i = 0; i < mr; i++) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + 31), _MM_HINT_T0);
  }
  for (int64_t k = 0; k < kc; k++) {
    __m512 b0 = _mm512_load_ps(b), b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
      __m512 ai = _mm512_set1_ps(a[i]);
      acc0[i] = _mm512_fmadd_ps(ai, b0, acc0[i]);
      acc1[i] = _mm512_fmadd_ps(ai, b1, acc1[i]);
    }
    a += MR;
    b += kNR;
  }
  __m512 va = _mm512_set1_ps(alpha);
  __mmask16 m0 = tail_mask(nr), m1 = tail_mask(nr - 16 < 0 ? 0 : nr - 16);
#pragma GCC unroll 16
  for (int i = 0; i < MR; i++) {
    if (i < mr) {
      store_row(c + i * ldc, acc0[i], m0, va, beta);
      store_row(c + i * ldc + 16, acc1[i], m1, va, beta);
    }
  }
}

// Packs n <= 16 rows (row i at src + i*rs, contiguous along k) into the first n columns of a
// micro-panel at dst whose k-stride is mr: 16 k at a time, one 16x16 transpose each.
KESTREL_AVX512 void pack_rows_transposed(const float* src, int64_t rs, int n, int64_t kc, int mr, float* dst) {
  __mmask16 out_mask = tail_mask(n);
  int64_t k = 0;
  __m512 r[16];
  for (; k < kc; k += 16) {
    __mmask16 km = tail_mask(kc - k);
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++) r[i] = i < n ? _mm512_maskz_loadu_ps(km, src + i * rs + k) : _mm512_setzero_ps();
    transpose16(r);
#pragma GCC unroll 16
    for (int i = 0; i < 16; i++)
      if (k + i < kc) _mm512_mask_storeu_ps(dst + (k + i) * mr, out_mask, r[i]);
  }
}

// Sources contiguous along the rows (rs == 1: B row-major, A transposed): walk each source row
// k across all panels, so reads stream through memory; each panel takes an mr-wide slice per k.
KESTREL_AVX512 void pack_rows_contiguous(const float* src, int64_t ks, int64_t rows, int64_t kc, int mr, float* dst) {
  int64_t panels = (rows + mr - 1) / mr;
  for (int64_t k = 0; k < kc; k++) {
    const float* s = src + k * ks;
    for (int64_t p = 0; p < panels; p++) {
      float* d = dst + p * mr * kc + k * mr;
      int64_t n = rows - p * mr;
      for (int c0 = 0; c0 < mr; c0 += 16) {
        __mmask16 lm = tail_mask(n - c0 < 0 ? 0 : n - c0), sm = tail_mask(mr - c0);
        _mm512_mask_storeu_ps(d + c0, sm, _mm512_maskz_loadu_ps(lm, s + p * mr + c0));
      }
    }
  }
}

// See PackFn in gemm.h. Contiguous-along-k sources (A row-major, B transposed) are transposed
// 16 rows at a time; contiguous-along-rows sources are copied one k at a time.
KESTREL_AVX512 void pack(const float* src, int64_t rs, int64_t ks, int64_t rows, int64_t kc, int mr, float* dst) {
  if (rs == 1 && ks != 1) return pack_rows_contiguous(src, ks, rows, kc, mr, dst);
  for (int64_t p = 0; p < rows; p += mr, dst += mr * kc, src += mr * rs) {
    int n = rows - p < mr ? int(rows - p) : mr;
    if (ks == 1) {
      if (n < mr) std::memset(dst, 0, sizeof(float) * mr * kc);
      for (int c0 = 0; c0 < n; c0 += 16)
        pack_rows_transposed(src + c0 * rs, rs, n - c0 < 16 ? n - c0 : 16, kc, mr, dst + c0);
    } else {
      for (int64_t k = 0; k < kc; k++)
        for (int r = 0; r < mr; r++) dst[k * mr + r] = r < n ? src[r * rs + k * ks] : 0.0f;
    }
  }
}

// ---------------------------------------------------------------- small M (no packing)

// C[m, n] = alpha * A[m, K] B[K, n] + beta * C with B row-major: C rows are the accumulators
// (a chunk of kChunk columns stays in L1) and B rows stream through once, four k at a time.
// (Register-blocking C instead reads B in short strided pieces, which prefetches worse.)
KESTREL_AVX512 void small_m_nn(int64_t m, int64_t n, int64_t K, float alpha, const float* A, const float* B,
                               int64_t ldb, float beta, float* C, int64_t ldc) {
  // Long contiguous runs of B rows stream best; the m C-row chunks must stay within L1 (16 KB).
  const int64_t kChunk = std::min<int64_t>(4096, std::max<int64_t>(512, 4096 / m / 16 * 16));
  for (int64_t j0 = 0; j0 < n; j0 += kChunk) {
    int64_t w = n - j0 < kChunk ? n - j0 : kChunk;
    for (int64_t r = 0; r < m; r++) {
      float* c = C + r * ldc + j0;
      for (int64_t v = 0; v < w; v += 16) {
        __mmask16 mk = tail_mask(w - v);
        __m512 x = beta == 0.0f ? _mm512_setzero_ps() : _mm512_mul_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(mk, c + v));
        _mm512_mask_storeu_ps(c + v, mk, x);
      }
    }
    int64_t k = 0;
    for (; k + 4 <= K; k += 4) {
      const float* b = B + k * ldb + j0;
      for (int64_t r = 0; r < m; r++) {
        const float* a = A + r * K + k;
        __m512 a0 = _mm512_set1_ps(alpha * a[0]), a1 = _mm512_set1_ps(alpha * a[1]);
        __m512 a2 = _mm512_set1_ps(alpha * a[2]), a3 = _mm512_set1_ps(alpha * a[3]);
        float* c = C + r * ldc + j0;
        for (int64_t v = 0; v < w; v += 16) {
          __mmask16 mk = tail_mask(w - v);
          __m512 x = _mm512_maskz_loadu_ps(mk, c + v);
          x = _mm512_fmadd_ps(a0, _mm512_maskz_loadu_ps(mk, b + v), x);
          x = _mm512_fmadd_ps(a1, _mm512_maskz_loadu_ps(mk, b + ldb + v), x);
          x = _mm512_fmadd_ps(a2, _mm512_maskz_loadu_ps(mk, b + 2 * ldb + v), x);
          x = _mm512_fmadd_ps(a3, _mm512_maskz_loadu_ps(mk, b + 3 * ldb + v), x);
          _mm512_mask_storeu_ps(c + v, mk, x);
        }
      }
    }
    for (; k < K; k++) {
      const float* b = B + k * ldb + j0;
      for (int64_t r = 0; r < m; r++) {
        __m512 a0 = _mm512_set1_ps(alpha * A[r * K + k]);
        float* c = C + r * ldc + j0;
        for (int64_t v = 0; v < w; v += 16) {
          __mmask16 mk = tail_mask(w - v);
          _mm512_mask_storeu_ps(c + v, mk, _mm512_fmadd_ps(a0, _mm512_maskz_loadu_ps(mk, b + v), _mm512_maskz_loadu_ps(mk, c + v)));
        }
      }
    }
  }
}

// Dot products of NJ rows of B (stored [n, K]) with MM rows of A, reduced and written to C. With
// `next` (the B rows the caller takes after these), their lines are prefetched as these stream,
// so the memory reads of the next rows overlap this block's arithmetic.
template <int MM, int NJ>
KESTREL_AVX512 void dots(int64_t K, float alpha, const float* A, const float* B, int64_t ldb, float beta, float* C,
                         int64_t ldc, const float* next = nullptr) {
  __m512 acc[MM][NJ];
#pragma GCC unroll 4
  for (int r = 0; r < MM; r++)
#pragma GCC unroll 4
    for (int j = 0; j < NJ; j++) acc[r][j] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; k += 16) {
    __mmask16 mk = tail_mask(K - k);
    __m512 b[NJ];
#pragma GCC unroll 4
    for (int j = 0; j < NJ; j++) b[j] = _mm512_maskz_loadu_ps(mk, B + j * ldb + k);
    if (next)
#pragma GCC unroll 4
      for (int j = 0; j < NJ; j++) _mm_prefetch(reinterpret_cast<const char*>(next + j * ldb + k), _MM_HINT_T0);
#pragma GCC unroll 4
    for (int r = 0; r < MM; r++) {
      __m512 a = _mm512_maskz_loadu_ps(mk, A + r * K + k);
#pragma GCC unroll 4
      for (int j = 0; j < NJ; j++) acc[r][j] = _mm512_fmadd_ps(a, b[j], acc[r][j]);
    }
  }
  float sums[MM][NJ];
  for (int r = 0; r < MM; r++)
    for (int j = 0; j < NJ; j++) sums[r][j] = _mm512_reduce_add_ps(acc[r][j]);
  store_sums(sums, alpha, beta, C, ldc);
}

constexpr int kSmallMGroup = 4;  // 4 x 4 accumulators, four B vectors and one A vector of the 32 zmm
constexpr int kSmallMWide = 2;   // 5-8 rows: 8 x 2 accumulators, two B vectors and one A vector
#define KESTREL_SMALL_M_TARGET KESTREL_AVX512
#include "gemm_small_m_nt.inc"
#undef KESTREL_SMALL_M_TARGET

void small_m(bool transB, int64_t m, int64_t n, int64_t K, float alpha, const float* A, const float* B, int64_t ldb,
             float beta, float* C, int64_t ldc) {
  if (transB) small_m_nt(m, n, K, alpha, A, B, ldb, beta, C, ldc);
  else small_m_nn(m, n, K, alpha, A, B, ldb, beta, C, ldc);
}

}  // namespace

const KernelSet* avx512_kernels() {
  // kc = 256: the 14 x kc A micro-panel (14 KB) and one streaming 32 x kc B micro-panel (32 KB)
  // share the 48 KB L1 (kc = 384 and 512 measured 5-15% slower: the A panel no longer survives
  // the B stream). nc = 1024: the kc x nc B block (1 MB) sits in the 2 MB L2. mc = 2048: A blocks
  // are re-read from L3, so they are large to pack B as few times as possible. Decode shapes
  // (M <= 8) skip packing altogether: measured 1.1-3x faster there. With B a Linear weight ([n, K],
  // dot products) the unpacked path reads the weight once for up to 32 rows (a batched decode step
  // of 32 sequences), where packing would copy the weight first.
  static const KernelSet set = {"avx512", 14, kNR, 2048, 256, 1024, kernel<14>, pack, small_m, 8, 32};
  return &set;
}

}  // namespace gemm_detail
}  // namespace kestrel
