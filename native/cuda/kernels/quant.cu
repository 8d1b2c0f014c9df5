// Quantized weights W [N, K] (QuantWeight in src/backend/kernels.ts; QLoRA's NF4/FP4 with optional
// double quantization, LLM.int8's row-scaled int8), decoded as native/quant.cc decodes them
// (code[c] * absmax in float32; q * (SCB / 127)):
//   dequant4_* / dequant8_*: flat elements [e0, e0 + count) of W into a float32 (or bf16/f16, for
//     half inputs) buffer (the batched path: src/backend/cuda/kernels/quant.ts multiplies the tile
//     with cuBLASLt);
//   gemv4_f32 / gemv8_f32: y [M, N] = x [M, K] Wᵀ for M <= 8 (decoding), a warp per four rows of
//     W reading their packed bytes once, a 32-bit word per lane and row, for all M rows of x.
#include "common.cuh"

using namespace kst;

#define KST_GEMV_ROWS 8

// A 4-bit weight: block sizes are powers of two, passed as shifts.
struct Weight4 {
  const u8* data;        // two codes per byte, the first in the high nibble
  const float* code;     // 16 entries
  const float* absmax;   // per block (null when nested)
  const u8* qabsmax;     // double quantization: the absmax codes, into ncode, scaled per nested block
  const float* ncode;    // 256 entries
  const float* nabsmax;
  float noffset;
  i32 nshift, shift;

  KFN float scale(i64 b) const { return qabsmax ? ncode[qabsmax[b]] * nabsmax[b >> nshift] + noffset : absmax[b]; }
  KFN float at(i64 e) const {
    u32 byte = data[e >> 1];
    return code[(e & 1) ? byte & 15u : byte >> 4] * scale(e >> shift);
  }
};

KFN Weight4 weight4(const u8* data, const float* code, const float* absmax, const u8* qabsmax, const float* ncode, const float* nabsmax,
                    float noffset, i32 nshift, i32 shift) {
  Weight4 w;
  w.data = data;
  w.code = code;
  w.absmax = absmax;
  w.qabsmax = qabsmax;
  w.ncode = ncode;
  w.nabsmax = nabsmax;
  w.noffset = noffset;
  w.nshift = nshift;
  w.shift = shift;
  return w;
}

#define KST_W4_PARAMS                                                                                          \
  const u8 *data, const float *code, const float *absmax, const u8 *qabsmax, const float *ncode, const float *nabsmax, \
      float noffset, i32 nshift, i32 shift
#define KST_W4_ARGS data, code, absmax, qabsmax, ncode, nabsmax, noffset, nshift, shift

// The decoded values in the GEMM's operand type: float32, or bfloat16/float16 (rounded once from
// the float32 value, for the half-precision GEMM of half inputs).
template <class T> KFN void dequant4_impl(const Weight4& w, i64 e0, i64 count, T* out) {
  KST_FOR(i, count) out[i] = from_float<T>(w.at(e0 + i));
}
template <class T> KFN void dequant8_impl(const i8* q, const float* scb, i64 K, i64 e0, i64 count, T* out) {
  KST_FOR(i, count) {
    i64 e = e0 + i;
    out[i] = from_float<T>(float(q[e]) * (scb[e / K] / 127.0f));
  }
}

#define KST_DEQUANT(sfx, T)                                                                                    \
  KERNEL(dequant4_##sfx, (KST_W4_PARAMS, i64 e0, i64 count, T* out)) { dequant4_impl(weight4(KST_W4_ARGS), e0, count, out); } \
  KERNEL(dequant8_##sfx, (const i8* q, const float* scb, i64 K, i64 e0, i64 count, T* out)) { dequant8_impl(q, scb, K, e0, count, out); }
KST_DEQUANT(f32, float)
KST_DEQUANT(bf16, bf16)
KST_DEQUANT(f16, f16)

// ---------------------------------------------------------------- GEMV (M <= 8)

#define KST_GEMV_R 4  // rows of W per warp: each load of x serves four rows

struct alignas(16) F4 { float a, b, c, d; };

// The 8 values of one 32-bit word of a 4-bit weight (flat element e first), scaled by their block.
struct Dec4 {
  static const int V = 8;
  Weight4 w;
  const float* table;  // the code table in shared memory
  KFN const u32* row(i64 n, i64 K) const { return (const u32*)(w.data + ((n * K) >> 1)); }
  KFN void decode(u32 v, i64 e, float* t) const {
    float s = w.scale(e >> w.shift);
    for (int b = 0; b < 4; b++) {
      u32 byte = (v >> (8 * b)) & 0xffu;
      t[2 * b] = table[byte >> 4] * s;
      t[2 * b + 1] = table[byte & 15u] * s;
    }
  }
  KFN float at(i64 e) const { return w.at(e); }
  KFN float row_scale(i64) const { return 1.0f; }
};

// The 4 values of one 32-bit word of an int8 weight; the row's SCB / 127 applies to the sum.
struct Dec8 {
  static const int V = 4;
  const i8* q;
  const float* scb;
  KFN const u32* row(i64 n, i64 K) const { return (const u32*)(q + n * K); }
  KFN void decode(u32 v, i64, float* t) const {
    for (int b = 0; b < 4; b++) t[b] = float(i8(u8((v >> (8 * b)) & 0xffu)));
  }
  KFN float at(i64 e) const { return float(q[e]); }
  KFN float row_scale(i64 n) const { return scb[n] / 127.0f; }
};

// x[m, k .. k + V) into xv, as float4 loads when x's rows are 16-byte aligned.
template <int V> KFN void load_x(const float* xr, bool vec, float* xv) {
  if (vec) {
    for (int j = 0; j < V; j += 4) {
      F4 f = *(const F4*)(xr + j);
      xv[j] = f.a;
      xv[j + 1] = f.b;
      xv[j + 2] = f.c;
      xv[j + 3] = f.d;
    }
  } else {
    for (int j = 0; j < V; j++) xv[j] = xr[j];
  }
}

// y [M, N] = x [M, K] Wᵀ, a warp per KST_GEMV_R rows of W. aligned: each row starts on a 32-bit
// word and a word's values share one block (4-bit: K % 8 == 0, blocks of >= 8; int8: K % 4 == 0),
// so lanes read whole words; otherwise element by element.
template <class D> KFN void gemv_impl(const D& d, const float* x, i64 ldx, i32 M, i64 N, i64 K, i32 aligned, float* y) {
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  const bool vec = ((u64)x & 15u) == 0 && (ldx & 3) == 0;
  for (i64 n0 = (i64(blockIdx.x) * warps + (threadIdx.x >> 5)) * KST_GEMV_R; n0 < N; n0 += i64(gridDim.x) * warps * KST_GEMV_R) {
    float acc[KST_GEMV_R][KST_GEMV_ROWS];
    i64 rows[KST_GEMV_R];  // past the end: the last row again, computed and not stored
    for (int r = 0; r < KST_GEMV_R; r++) {
      rows[r] = n0 + r < N ? n0 + r : N - 1;
      for (int m = 0; m < KST_GEMV_ROWS; m++) acc[r][m] = 0;
    }
    if (aligned) {
      const u32* words[KST_GEMV_R];
      for (int r = 0; r < KST_GEMV_R; r++) words[r] = d.row(rows[r], K);
      for (i64 q = lane; q < K / D::V; q += 32) {
        float t[KST_GEMV_R][D::V];
        for (int r = 0; r < KST_GEMV_R; r++) d.decode(words[r][q], rows[r] * K + q * D::V, t[r]);
        for (int m = 0; m < KST_GEMV_ROWS; m++) {
          if (m >= M) break;
          float xv[D::V];
          load_x<D::V>(x + m * ldx + q * D::V, vec, xv);
          for (int r = 0; r < KST_GEMV_R; r++)
            for (int j = 0; j < D::V; j++) acc[r][m] += xv[j] * t[r][j];
        }
      }
    } else {
      for (i64 k = lane; k < K; k += 32) {
        float t[KST_GEMV_R];
        for (int r = 0; r < KST_GEMV_R; r++) t[r] = d.at(rows[r] * K + k);
        for (int m = 0; m < KST_GEMV_ROWS; m++) {
          if (m >= M) break;
          float xv = x[m * ldx + k];
          for (int r = 0; r < KST_GEMV_R; r++) acc[r][m] += xv * t[r];
        }
      }
    }
    for (int r = 0; r < KST_GEMV_R; r++)
      for (int m = 0; m < KST_GEMV_ROWS; m++) {
        if (m >= M) break;
        float v = warp_sum(acc[r][m]);
        if (lane == 0 && n0 + r < N) y[m * N + n0 + r] = v * d.row_scale(n0 + r);
      }
  }
}

KERNEL(gemv4_f32, (KST_W4_PARAMS, const float* x, i64 ldx, i32 M, i64 N, i64 K, i32 aligned, float* y)) {
  __shared__ float table[16];
  if (threadIdx.x < 16) table[threadIdx.x] = code[threadIdx.x];
  sync();
  Dec4 d;
  d.w = weight4(KST_W4_ARGS);
  d.table = table;
  gemv_impl(d, x, ldx, M, N, K, aligned, y);
}

KERNEL(gemv8_f32, (const i8* q, const float* scb, const float* x, i64 ldx, i32 M, i64 N, i64 K, i32 aligned, float* y)) {
  Dec8 d;
  d.q = q;
  d.scb = scb;
  gemv_impl(d, x, ldx, M, N, K, aligned, y);
}
