// Single-precision GEMM for the CPU backend: C = alpha * op(A) op(B) + beta * C, row-major.
// Other kernels (attention, quantized matmul) call sgemm() directly; the registered `matmul`
// kernel in gemm.cc is a thin batched wrapper over it. The implementation follows the
// GotoBLAS/BLIS scheme (packed panels, cache blocking, a register-blocked micro-kernel per ISA);
// see gemm.cc for the loop nest and the choice of block sizes.
#pragma once
#include <cstdint>
#include <functional>

namespace kestrel {

// C[M,N] = alpha * op(A) op(B) + beta * C. All matrices are row-major with leading dimensions
// lda/ldb/ldc (elements). op(A) is A[M,K], or with transA the transpose of A stored [K,M];
// likewise op(B) is B[K,N], or with transB B stored [N,K]. beta == 0 never reads C (it may hold
// NaN garbage). Runs on the thread pool unless called from inside a parallel region.
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

namespace gemm_detail {

// A micro-kernel computes one MR x NR tile from packed panels:
//   acc[i][j] = sum_k a[k*MR + i] * b[k*NR + j]          (0 <= k < kc)
//   C[i*ldc + j] = alpha * acc[i][j] + beta * C[i*ldc + j] for i < mr, j < nr
// with beta == 0 meaning "store, never read C". Panels are zero-padded to MR / NR.
using MicroKernel = void (*)(int64_t kc, const float* a, const float* b, float* c, int64_t ldc,
                             float alpha, float beta, int mr, int nr);

// Packs the k-range [0, kc) of `rows` rows of a matrix into MR-tall micro-panels (element (r, k)
// at panel*MR*kc + k*MR + r, zero-padded to a multiple of MR). `src` points at element (0, 0) of
// the block; element (r, k) lives at src[r*rs + k*ks]. One routine packs both A (r = row of C)
// and B^T (r = column of C), so each ISA provides a fast path for the two memory orders.
using PackFn = void (*)(const float* src, int64_t rs, int64_t ks, int64_t rows, int64_t kc, int mr, float* dst);

// Products with few rows of C (decode steps): C = alpha * A B + beta * C with A row-major
// contiguous [m, K] (m small), B as in sgemm, no packing (B is streamed once).
using SmallMFn = void (*)(bool transB, int64_t m, int64_t n, int64_t K, float alpha, const float* A,
                          const float* B, int64_t ldb, float beta, float* C, int64_t ldc);

struct KernelSet {
  const char* name;
  int mr, nr;              // micro-tile: mr rows of C (broadcast from A) x nr columns (vectors of B)
  int64_t mc, kc, nc;      // cache blocks: A block mc x kc (L3), B block kc x nc (L2), see gemm.cc
  MicroKernel kernel;
  PackFn pack;             // generic packing when null
  SmallMFn small_m;        // null: small M goes through the packed path
  int64_t small_m_max;     // use small_m for M <= this (B row-major)
  int64_t small_m_max_nt;  // ... and for M <= this when B is stored [N, K] (transB: a Linear weight)
};

// sgemm on at most `threads` threads (1: the calling thread only, for callers that already run
// one product per pool thread).
// bias (N values, or null): C = alpha A op(B) + bias, each block of C filled with the bias just before
// its first products accumulate onto it, in cache (beta must then be 0).
void sgemm_on(int threads, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* bias = nullptr);

// C[M, N] = A[M, K] op(B) (row-major A, rows lda apart; C overwritten) where B exists only as its packed
// panels: pack_b(j0, cols, k0, kc, nr, dst) writes columns j0 .. j0 + cols, k in k0 .. k0 + kc, as the
// PackFn layout with MR = nr (what pack_fn() would make of op(B)ᵀ). Called from the pool's threads at
// once, each with its own dst. For weights decoded on the fly (quant.cc), so no float copy of B is made.
using PackB = std::function<void(int64_t j0, int64_t cols, int64_t k0, int64_t kc, int nr, float* dst)>;
void sgemm_pack_b(int threads, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const PackB& pack_b, float* C,
                  int64_t ldc);
// The packing routine of the kernel set in use.
PackFn pack_fn();

// Shared with the half-precision driver (gemm_half.cc), which runs the same loop nest.
// The block size for n items: at most `max`, split into equal blocks of whole `unit`s.
int64_t even_block(int64_t n, int64_t max, int64_t unit);
// The tm x tn grid of C rectangles (one per thread) with the least estimated time per thread.
void choose_grid(int mr, int nr, int64_t mc, int64_t M, int64_t N, int64_t K, int threads, int* tm, int* tn);
// The scalar packing routine (PackFn) for kernel sets without their own.
void generic_pack(const float* src, int64_t rs, int64_t ks, int64_t rows, int64_t kc, int mr, float* dst);

// C[r, j] = alpha * sums[r][j] (+ beta * C[r, j]; beta == 0 never reads C): the store of the
// small-M dot-product paths (gemm_small_m_nt.inc), after each ISA reduced its accumulators.
template <int MM, int NJ>
inline void store_sums(const float (&sums)[MM][NJ], float alpha, float beta, float* C, int64_t ldc) {
  for (int r = 0; r < MM; r++)
    for (int j = 0; j < NJ; j++) {
      float v = alpha * sums[r][j];
      float* c = C + r * ldc + j;
      *c = beta == 0.0f ? v : v + beta * *c;
    }
}

const KernelSet* avx512_kernels();  // gemm_avx512.cc
const KernelSet* avx2_kernels();    // gemm_avx2.cc
const KernelSet& select_kernels();  // by cpu_features() (KESTREL_SIMD forces a lower level)

}  // namespace gemm_detail
}  // namespace kestrel
