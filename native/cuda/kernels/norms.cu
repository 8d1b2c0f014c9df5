// RMSNorm and LayerNorm over the last dim, forward and backward, in float32 as native/nn_rows.inc
// computes them (src/ops/fused/norm.ts has the maths), a row per warp or per block (rows.cuh);
// RMSNorm also on bfloat16/float16 storage, computed in float (= float32 on upcast inputs, cast back).
// Weight/bias gradients are deterministic sums over rows, no float atomics: each block adds its
// rows into its own [D] slice of a partial buffer (via shared memory per warp for short rows, in
// place for long ones) and column_sums adds the slices up in a fixed order.
#include "rows.cuh"

using namespace kst;

// Rows per block of the warp form of the backward kernels (their column sums live in shared memory).
#define NORM_WARPS 4
#define NORM_WARP_D 1024

// ---------------------------------------------------------------- RMSNorm

// Storage types: x, out, dy and dx are TX, the weight TW (float32 or TX); rstd and the weight
// gradient's partials are float32. Every element is loaded into float and rounded once when stored.

// y = x rstd (offset + w), rstd = 1 / sqrt(mean(x^2) + eps)
template <bool WARP, class TX, class TW> KFN void rms_norm_impl(const TX* x, const TW* w, float eps, float offset, TX* out, float* rstd,
                                                                i64 rows, i64 D) {
  __shared__ float scratch[32];
  const int lane = Row<WARP>::lane(), width = Row<WARP>::width();
  for (i64 r = Row<WARP>::first(); r < rows; r += Row<WARP>::step()) {
    const TX* xr = x + r * D;
    TX* yr = out + r * D;
    float ss = 0.0f;
    for (i64 j = lane; j < D; j += width) ss += to_float(xr[j]) * to_float(xr[j]);
    const float rs = 1.0f / sqrtf(Row<WARP>::sum(ss, scratch) / float(D) + eps);
    if (lane == 0) rstd[r] = rs;
    for (i64 j = lane; j < D; j += width)
      yr[j] = from_float<TX>(w ? to_float(xr[j]) * rs * (offset + to_float(w[j])) : to_float(xr[j]) * rs);
  }
}

// One row of the backward: xhat = x rstd, gw = dy (offset + w): dx = rstd (gw - xhat mean(gw xhat)),
// and acc[j] += dy xhat when acc is given. Each dy element is read (by the thread that writes it)
// before dx overwrites it, so dx may be dy.
template <bool WARP, class TX, class TW> KFN void rms_backward_row(const TX* xr, const TX* gr, TX* dr, const TW* w, float offset, float rs,
                                                                   i64 D, float* acc, float* scratch) {
  const int lane = Row<WARP>::lane(), width = Row<WARP>::width();
  float dot = 0.0f;
  for (i64 j = lane; j < D; j += width)
    dot += (w ? to_float(gr[j]) * (offset + to_float(w[j])) : to_float(gr[j])) * (to_float(xr[j]) * rs);
  const float mdot = Row<WARP>::sum(dot, scratch) / float(D);
  for (i64 j = lane; j < D; j += width) {
    const float g = to_float(gr[j]), gw = w ? g * (offset + to_float(w[j])) : g, xhat = to_float(xr[j]) * rs;
    dr[j] = from_float<TX>(rs * (gw - xhat * mdot));
    if (acc) acc[j] += g * xhat;
  }
}

// Warp form: warp k of a block sums its rows' dy xhat into cols[k]; the block then writes the sum
// of its warps' columns (in warp order) to partial[blockIdx.x] (null: no weight gradient).
KFN void norm_partials_from_shared(float (*cols)[NORM_WARP_D], float* partial, i64 D) {
  sync();
  for (i64 j = threadIdx.x; j < D; j += blockDim.x) {
    float s = 0.0f;
    for (int k = 0; k < NORM_WARPS; k++) s += cols[k][j];
    partial[blockIdx.x * D + j] = s;
  }
}

KFN void zero_columns(float* c, i64 D, int lane, int width) {
  for (i64 j = lane; j < D; j += width) c[j] = 0.0f;
}

template <class TX, class TW> KFN void rms_backward_warp(const TX* x, const TW* w, float offset, const float* rstd, const TX* dy, TX* dx,
                                                         float* partial, i64 rows, i64 D) {
  __shared__ float cols[NORM_WARPS][NORM_WARP_D];
  const int lane = threadIdx.x & 31;
  float* acc = partial ? cols[threadIdx.x >> 5] : nullptr;
  if (acc) zero_columns(acc, D, lane, 32);
  for (i64 r = Row<true>::first(); r < rows; r += Row<true>::step())
    rms_backward_row<true>(x + r * D, dy + r * D, dx + r * D, w, offset, rstd[r], D, acc, nullptr);
  if (partial) norm_partials_from_shared(cols, partial, D);
}

// Block form: the block's threads own columns j = threadIdx.x + k blockDim.x of partial[blockIdx.x].
template <class TX, class TW> KFN void rms_backward_block(const TX* x, const TW* w, float offset, const float* rstd, const TX* dy, TX* dx,
                                                          float* partial, i64 rows, i64 D) {
  __shared__ float scratch[32];
  float* acc = partial ? partial + blockIdx.x * D : nullptr;
  if (acc) zero_columns(acc, D, threadIdx.x, blockDim.x);
  for (i64 r = blockIdx.x; r < rows; r += gridDim.x)
    rms_backward_row<false>(x + r * D, dy + r * D, dx + r * D, w, offset, rstd[r], D, acc, scratch);
}

// rms_norm[_backward]_<form>_<x>[_<w>] (the weight's suffix when it differs from x's)
#define KST_RMS_NORM(sfx, TX, TW)                                                                                      \
  KERNEL(rms_norm_warp_##sfx, (const TX* x, const TW* w, float eps, float offset, TX* out, float* rstd, i64 rows, i64 D)) { \
    rms_norm_impl<true>(x, w, eps, offset, out, rstd, rows, D);                                                        \
  }                                                                                                                    \
  KERNEL(rms_norm_block_##sfx, (const TX* x, const TW* w, float eps, float offset, TX* out, float* rstd, i64 rows, i64 D)) { \
    rms_norm_impl<false>(x, w, eps, offset, out, rstd, rows, D);                                                       \
  }                                                                                                                    \
  KERNEL(rms_norm_backward_warp_##sfx, (const TX* x, const TW* w, float offset, const float* rstd, const TX* dy, TX* dx,  \
                                        float* partial, i64 rows, i64 D)) {                                            \
    rms_backward_warp(x, w, offset, rstd, dy, dx, partial, rows, D);                                                   \
  }                                                                                                                    \
  KERNEL(rms_norm_backward_block_##sfx, (const TX* x, const TW* w, float offset, const float* rstd, const TX* dy, TX* dx, \
                                         float* partial, i64 rows, i64 D)) {                                           \
    rms_backward_block(x, w, offset, rstd, dy, dx, partial, rows, D);                                                  \
  }
KST_RMS_NORM(f32, float, float)
KST_RMS_NORM(bf16, bf16, bf16)
KST_RMS_NORM(f16, f16, f16)
KST_RMS_NORM(bf16_f32, bf16, float)
KST_RMS_NORM(f16_f32, f16, float)

// ---------------------------------------------------------------- LayerNorm

// y = (x - mean) rstd w + b, rstd = 1 / sqrt(var + eps) (biased variance, two passes)
template <bool WARP> KFN void layer_norm_impl(const float* x, const float* w, const float* b, float eps, float* out, float* mean,
                                              float* rstd, i64 rows, i64 D) {
  __shared__ float scratch[32];
  const int lane = Row<WARP>::lane(), width = Row<WARP>::width();
  for (i64 r = Row<WARP>::first(); r < rows; r += Row<WARP>::step()) {
    const float* xr = x + r * D;
    float* yr = out + r * D;
    float s = 0.0f;
    for (i64 j = lane; j < D; j += width) s += xr[j];
    const float mu = Row<WARP>::sum(s, scratch) / float(D);
    float ss = 0.0f;
    for (i64 j = lane; j < D; j += width) ss += (xr[j] - mu) * (xr[j] - mu);
    const float rs = 1.0f / sqrtf(Row<WARP>::sum(ss, scratch) / float(D) + eps);
    if (lane == 0) {
      mean[r] = mu;
      rstd[r] = rs;
    }
    for (i64 j = lane; j < D; j += width) {
      float y = (xr[j] - mu) * rs;
      if (w) y *= w[j];
      if (b) y += b[j];
      yr[j] = y;
    }
  }
}

// One row: xhat = (x - mean) rstd, gw = dy w: dx = rstd (gw - mean(gw) - xhat mean(gw xhat)),
// accw[j] += dy xhat, accb[j] += dy (each when given).
template <bool WARP> KFN void ln_backward_row(const float* xr, const float* gr, float* dr, const float* w, float mu, float rs, i64 D,
                                              float* accw, float* accb, float* scratch) {
  const int lane = Row<WARP>::lane(), width = Row<WARP>::width();
  float sg = 0.0f, sgx = 0.0f;
  for (i64 j = lane; j < D; j += width) {
    const float gw = w ? gr[j] * w[j] : gr[j];
    sg += gw;
    sgx += gw * ((xr[j] - mu) * rs);
  }
  const float msg = Row<WARP>::sum(sg, scratch) / float(D);
  const float msgx = Row<WARP>::sum(sgx, scratch) / float(D);
  for (i64 j = lane; j < D; j += width) {
    const float g = gr[j], gw = w ? g * w[j] : g, xhat = (xr[j] - mu) * rs;
    dr[j] = rs * ((gw - msg) - xhat * msgx);
    if (accw) accw[j] += g * xhat;
    if (accb) accb[j] += g;
  }
}

KERNEL(layer_norm_backward_warp_f32, (const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
                                      float* dx, float* pw, float* pb, i64 rows, i64 D)) {
  __shared__ float cols_w[NORM_WARPS][NORM_WARP_D];
  __shared__ float cols_b[NORM_WARPS][NORM_WARP_D];
  const int lane = threadIdx.x & 31;
  float* accw = pw ? cols_w[threadIdx.x >> 5] : nullptr;
  float* accb = pb ? cols_b[threadIdx.x >> 5] : nullptr;
  if (accw) zero_columns(accw, D, lane, 32);
  if (accb) zero_columns(accb, D, lane, 32);
  for (i64 r = Row<true>::first(); r < rows; r += Row<true>::step())
    ln_backward_row<true>(x + r * D, dy + r * D, dx + r * D, w, mean[r], rstd[r], D, accw, accb, nullptr);
  if (pw) norm_partials_from_shared(cols_w, pw, D);
  if (pb) norm_partials_from_shared(cols_b, pb, D);
}

KERNEL(layer_norm_backward_block_f32, (const float* x, const float* w, const float* mean, const float* rstd, const float* dy,
                                       float* dx, float* pw, float* pb, i64 rows, i64 D)) {
  __shared__ float scratch[32];
  float* accw = pw ? pw + blockIdx.x * D : nullptr;
  float* accb = pb ? pb + blockIdx.x * D : nullptr;
  if (accw) zero_columns(accw, D, threadIdx.x, blockDim.x);
  if (accb) zero_columns(accb, D, threadIdx.x, blockDim.x);
  for (i64 r = blockIdx.x; r < rows; r += gridDim.x)
    ln_backward_row<false>(x + r * D, dy + r * D, dx + r * D, w, mean[r], rstd[r], D, accw, accb, scratch);
}

KERNEL(layer_norm_warp_f32, (const float* x, const float* w, const float* b, float eps, float* out, float* mean, float* rstd,
                             i64 rows, i64 D)) {
  layer_norm_impl<true>(x, w, b, eps, out, mean, rstd, rows, D);
}
KERNEL(layer_norm_block_f32, (const float* x, const float* w, const float* b, float eps, float* out, float* mean, float* rstd,
                              i64 rows, i64 D)) {
  layer_norm_impl<false>(x, w, b, eps, out, mean, rstd, rows, D);
}

// ---------------------------------------------------------------- column sums

// out[j] = sum over p of partial[p, j], p in increasing order within each of 8 interleaved
// subsets, the subsets then added in order: 256 threads as 32 columns x 8 subsets per block.
// The float sum is rounded once into the gradient's storage type.
template <class T> KFN void column_sums_impl(const float* partial, i64 parts, i64 D, T* out) {
  __shared__ float sub[8][32];
  const int cx = threadIdx.x & 31, cy = threadIdx.x >> 5;
  for (i64 j0 = i64(blockIdx.x) * 32; j0 < D; j0 += i64(gridDim.x) * 32) {
    const i64 j = j0 + cx;
    float s = 0.0f;
    if (j < D)
      for (i64 p = cy; p < parts; p += 8) s += partial[p * D + j];
    sync();
    sub[cy][cx] = s;
    sync();
    if (cy == 0 && j < D) {
      float t = 0.0f;
      for (int k = 0; k < 8; k++) t += sub[k][cx];
      out[j] = from_float<T>(t);
    }
  }
}

KERNEL(column_sums_f32, (const float* partial, i64 parts, i64 D, float* out)) { column_sums_impl(partial, parts, D, out); }
KERNEL(column_sums_bf16, (const float* partial, i64 parts, i64 D, bf16* out)) { column_sums_impl(partial, parts, D, out); }
KERNEL(column_sums_f16, (const float* partial, i64 parts, i64 D, f16* out)) { column_sums_impl(partial, parts, D, out); }
