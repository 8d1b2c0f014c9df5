// AVX2/FMA micro-kernel of sgemm (gemm.h) for CPUs without AVX-512: a 6x16 tile of C in 12 ymm
// accumulators, two B vectors and one broadcast per k (the classic Haswell shape of BLIS and
// OpenBLAS, 15 of the 16 registers). Packing and small M use the generic code in gemm.cc.
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

}  // namespace

const KernelSet* avx2_kernels() {
  // kc = 256: the 6 x kc A micro-panel (6 KB) stays in L1 beside the streaming 16 x kc B
  // micro-panel (16 KB); nc = 1024: the kc x nc B block (1 MB) stays in L2; mc as for AVX-512.
  static const KernelSet set = {"avx2", kMR, kNR, 2048, 256, 1024, kernel, nullptr, nullptr, 0, 0};
  return &set;
}

}  // namespace gemm_detail
}  // namespace kestrel
