// Quantized weights W [N, K] (QuantWeight in src/backend/kernels.ts; QLoRA's NF4/FP4 with optional
// double quantization, LLM.int8's row-scaled int8), decoded as native/quant.cc decodes them
// (code[c] * absmax in float32; q * (SCB / 127)):
//   dequant4_f32 / dequant8_f32: flat elements [e0, e0 + count) of W into a float32 buffer (the
//     batched path: src/backend/cuda/kernels/quant.ts multiplies the tile with cuBLASLt);
//   gemv4_f32 / gemv8_f32: y [M, N] = x [M, K] Wᵀ for M <= 8 (decoding), a warp per row of W
//     reading its packed bytes once, four bytes per lane, for all M rows of x.
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

KERNEL(dequant4_f32, (KST_W4_PARAMS, i64 e0, i64 count, float* out)) {
  Weight4 w = weight4(KST_W4_ARGS);
  KST_FOR(i, count) out[i] = w.at(e0 + i);
}

KERNEL(dequant8_f32, (const i8* q, const float* scb, i64 K, i64 e0, i64 count, float* out)) {
  KST_FOR(i, count) {
    i64 e = e0 + i;
    out[i] = float(q[e]) * (scb[e / K] / 127.0f);
  }
}

// Sums acc[m] over the warp and writes y[m, n] (lane 0).
KFN void gemv_store(float* acc, i32 M, float* y, i64 N, i64 n, float scale) {
  for (int m = 0; m < KST_GEMV_ROWS; m++) {
    float v = warp_sum(acc[m]);
    if ((threadIdx.x & 31) == 0 && m < M) y[m * N + n] = v * scale;
  }
}

// acc[m] += sum_j x[m, k + j] * t[j] over the 8 decoded values t of one 32-bit word.
KFN void gemv_word(const float* t, const float* x, i64 ldx, i32 M, i64 k, float* acc) {
  for (int m = 0; m < KST_GEMV_ROWS; m++) {
    if (m >= M) break;
    const float* xr = x + m * ldx + k;
    float s = 0;
    for (int j = 0; j < 8; j++) s += xr[j] * t[j];
    acc[m] += s;
  }
}

// aligned: K % 8 == 0 and blocks of at least 8 (each 32-bit word holds 8 codes of one block).
KERNEL(gemv4_f32, (KST_W4_PARAMS, const float* x, i64 ldx, i32 M, i64 N, i64 K, i32 aligned, float* y)) {
  Weight4 w = weight4(KST_W4_ARGS);
  __shared__ float table[16];
  if (threadIdx.x < 16) table[threadIdx.x] = code[threadIdx.x];
  sync();
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (i64 n = i64(blockIdx.x) * warps + (threadIdx.x >> 5); n < N; n += i64(gridDim.x) * warps) {
    float acc[KST_GEMV_ROWS];
    for (int m = 0; m < KST_GEMV_ROWS; m++) acc[m] = 0;
    const i64 row = n * K;
    if (aligned) {
      const u32* words = (const u32*)(data + (row >> 1));
      for (i64 q = lane; q < (K >> 3); q += 32) {
        u32 v = words[q];
        float s = w.scale((row + (q << 3)) >> shift), t[8];
        for (int b = 0; b < 4; b++) {
          u32 byte = (v >> (8 * b)) & 0xffu;
          t[2 * b] = table[byte >> 4] * s;
          t[2 * b + 1] = table[byte & 15u] * s;
        }
        gemv_word(t, x, ldx, M, q << 3, acc);
      }
    } else {
      for (i64 k = lane; k < K; k += 32) {
        float v = w.at(row + k);
        for (int m = 0; m < KST_GEMV_ROWS; m++)
          if (m < M) acc[m] += x[m * ldx + k] * v;
      }
    }
    gemv_store(acc, M, y, N, n, 1.0f);
  }
}

// aligned: K % 4 == 0 (rows start on a 32-bit word).
KERNEL(gemv8_f32, (const i8* q, const float* scb, const float* x, i64 ldx, i32 M, i64 N, i64 K, i32 aligned, float* y)) {
  const int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (i64 n = i64(blockIdx.x) * warps + (threadIdx.x >> 5); n < N; n += i64(gridDim.x) * warps) {
    float acc[KST_GEMV_ROWS];
    for (int m = 0; m < KST_GEMV_ROWS; m++) acc[m] = 0;
    const i8* row = q + n * K;
    if (aligned) {
      const u32* words = (const u32*)row;
      for (i64 c = lane; c < (K >> 2); c += 32) {
        u32 v = words[c];
        float t[4];
        for (int b = 0; b < 4; b++) t[b] = float(i8(u8((v >> (8 * b)) & 0xffu)));
        for (int m = 0; m < KST_GEMV_ROWS; m++) {
          if (m >= M) break;
          const float* xr = x + m * ldx + (c << 2);
          acc[m] += xr[0] * t[0] + xr[1] * t[1] + xr[2] * t[2] + xr[3] * t[3];
        }
      }
    } else {
      for (i64 k = lane; k < K; k += 32) {
        float v = float(row[k]);
        for (int m = 0; m < KST_GEMV_ROWS; m++)
          if (m < M) acc[m] += x[m * ldx + k] * v;
      }
    }
    gemv_store(acc, M, y, N, n, scb[n] / 127.0f);
  }
}
