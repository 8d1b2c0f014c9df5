// y [M, N] (+)= x [M, K] Wᵀ for a few rows of x (M <= 8: batch-1 decoding and small batches), W
// stored row-major [N, K] as a Linear keeps it. cuBLASLt's GEMMs for M = 1 read W at a small
// fraction of the memory bandwidth (seen on an H200: ~17% for Llama-1B's projections); here a warp
// owns one row of W, streams it once in 16-byte loads (8 bf16/f16 or 4 float32 per lane and step),
// and keeps one float32 sum per row of x (x is small and stays in L1/L2 for every warp). Sums in
// float32; y in the operands' dtype or float32. src/backend/cuda/kernels/matmul.ts picks it.
#include "common.cuh"

using namespace kst;

// The E elements (E = 16 / sizeof(T)) of a 16-byte vector as float32.
KFN void unpack(const Vec16& v, const float*, float* out) {
  for (int i = 0; i < 4; i++) out[i] = bits_to_float(v.w[i]);
}
KFN void unpack(const Vec16& v, const bf16*, float* out) {
  for (int i = 0; i < 4; i++) {
    out[2 * i] = bf16_to_f32(u16(v.w[i] & 0xffffu));
    out[2 * i + 1] = bf16_to_f32(u16(v.w[i] >> 16));
  }
}
KFN void unpack(const Vec16& v, const f16*, float* out) {
  for (int i = 0; i < 4; i++) {
    out[2 * i] = f16_to_f32(u16(v.w[i] & 0xffffu));
    out[2 * i + 1] = f16_to_f32(u16(v.w[i] >> 16));
  }
}

#define KST_GEMV_ROWS 8

// vec: every row start of x and W is 16-byte aligned and K is a multiple of E (else scalar loads).
template <class T, class O> KFN void gemv_impl(const T* x, i64 ldx, i32 M, const T* w, i64 ldw, i64 N, i64 K, O* y, i64 ldy,
                                               i32 accumulate, i32 vec) {
  const int E = 16 / int(sizeof(T));
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (i64 n = i64(blockIdx.x) * warps + (threadIdx.x >> 5); n < N; n += i64(gridDim.x) * warps) {
    // fully unrolled over the rows of x (a runtime M <= 8 only masks them), so acc stays in registers
    float acc[KST_GEMV_ROWS];
    KST_UNROLL for (int m = 0; m < KST_GEMV_ROWS; m++) acc[m] = 0.f;
    const T* wr = w + n * ldw;
    i64 k0 = 0;
    if (vec) {
      for (i64 k = i64(lane) * E; k + E <= K; k += 32 * E) {
        float wv[8], xv[8];
        unpack(load16(wr + k), wr, wv);
        KST_UNROLL for (int m = 0; m < KST_GEMV_ROWS; m++) {
          if (m < M) {
            unpack(load16(x + m * ldx + k), x, xv);
            KST_UNROLL for (int e = 0; e < 8; e++) if (e < E) acc[m] += wv[e] * xv[e];
          }
        }
      }
      k0 = K / E * E;
    }
    for (i64 k = k0 + lane; k < K; k += 32) {
      const float wv = to_float(wr[k]);
      KST_UNROLL for (int m = 0; m < KST_GEMV_ROWS; m++)
        if (m < M) acc[m] += wv * to_float(x[m * ldx + k]);
    }
    KST_UNROLL for (int m = 0; m < KST_GEMV_ROWS; m++) {
      const float s = warp_sum(acc[m]);  // every lane takes part, whatever M is
      if (lane == 0 && m < M) {
        O* out = y + m * ldy + n;
        *out = from_float<O>(accumulate ? to_float(*out) + s : s);
      }
    }
  }
}

#define KST_GEMV(sfx, T, O) \
  KERNEL(gemv_##sfx, (const T* x, i64 ldx, i32 M, const T* w, i64 ldw, i64 N, i64 K, O* y, i64 ldy, i32 accumulate, i32 vec)) { \
    gemv_impl<T, O>(x, ldx, M, w, ldw, N, K, y, ldy, accumulate, vec);                                                      \
  }
KST_GEMV(f32, float, float)
KST_GEMV(bf16, bf16, bf16)
KST_GEMV(f16, f16, f16)
KST_GEMV(bf16_f32, bf16, float)
KST_GEMV(f16_f32, f16, float)
