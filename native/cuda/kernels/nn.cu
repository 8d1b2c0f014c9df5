// softmax / log-softmax over the last dim with its backward, the gated activation (glu) with its
// backward, and rotary embedding: the formulas of src/ops/fused/*.ts in float32, as native/nn.cc
// and native/glu.cc compute them. softmax runs a row per warp or per block (rows.cuh) with an
// online max/sum, so x is read twice; glu and rope are elementwise.
#include "rows.cuh"

using namespace kst;

// ---------------------------------------------------------------- softmax

// softmax: y = exp(x - max) / sum;  log-softmax: y = x - max - log(sum)
template <bool WARP> KFN void softmax_impl(const float* x, float* y, i64 rows, i64 D, i32 log) {
  __shared__ float sm[32], ss[32];
  const int lane = Row<WARP>::lane(), width = Row<WARP>::width();
  for (i64 r = Row<WARP>::first(); r < rows; r += Row<WARP>::step()) {
    const float* xr = x + r * D;
    float* yr = y + r * D;
    MaxSum a = max_sum_empty();
    for (i64 j = lane; j < D; j += width) a = max_sum_add(a, xr[j]);
    a = row_max_sum<WARP>(a, sm, ss);
    if (log) {
      const float c = a.m + logf(a.s);
      for (i64 j = lane; j < D; j += width) yr[j] = xr[j] - c;
    } else {
      const float inv = 1.0f / a.s;
      for (i64 j = lane; j < D; j += width) yr[j] = expf(xr[j] - a.m) * inv;
    }
  }
}

// softmax: dx = y (dy - sum(dy y));  log-softmax: dx = dy - exp(y) sum(dy)
template <bool WARP> KFN void softmax_backward_impl(const float* y, const float* dy, float* dx, i64 rows, i64 D, i32 log) {
  __shared__ float scratch[32];
  const int lane = Row<WARP>::lane(), width = Row<WARP>::width();
  for (i64 r = Row<WARP>::first(); r < rows; r += Row<WARP>::step()) {
    const float *yr = y + r * D, *gr = dy + r * D;
    float* dr = dx + r * D;
    float dot = 0.0f;
    for (i64 j = lane; j < D; j += width) dot += log ? gr[j] : gr[j] * yr[j];
    dot = Row<WARP>::sum(dot, scratch);
    if (log)
      for (i64 j = lane; j < D; j += width) dr[j] = gr[j] - expf(yr[j]) * dot;
    else
      for (i64 j = lane; j < D; j += width) dr[j] = yr[j] * (gr[j] - dot);
  }
}

KERNEL(softmax_warp_f32, (const float* x, float* y, i64 rows, i64 D, i32 log)) { softmax_impl<true>(x, y, rows, D, log); }
KERNEL(softmax_block_f32, (const float* x, float* y, i64 rows, i64 D, i32 log)) { softmax_impl<false>(x, y, rows, D, log); }
KERNEL(softmax_backward_warp_f32, (const float* y, const float* dy, float* dx, i64 rows, i64 D, i32 log)) {
  softmax_backward_impl<true>(y, dy, dx, rows, D, log);
}
KERNEL(softmax_backward_block_f32, (const float* y, const float* dy, float* dx, i64 rows, i64 D, i32 log)) {
  softmax_backward_impl<false>(y, dy, dx, rows, D, log);
}

// ---------------------------------------------------------------- gated activation

// act(x) and act'(x) for the codes of GLU_ACTIVATIONS (0 silu, 1 gelu_tanh, 2 gelu_erf), written
// exactly as elementwise.cu's unary_f / unary_df write them for float, so that fused and composite
// agree to the bit: gelu_tanh as x sigmoid(2u) (0.5 (1 + tanh u) = sigmoid(2u)) and gelu_erf with
// erfc (1 + erf(z) = erfc(-z)), neither of which cancels for x < 0.
KFN float glu_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
KFN float gelu_u2(float x) { return 2.0f * 0.7978845608028654f * (x + 0.044715f * x * x * x); }

template <int ACT> KFN float act_f(float x) {
  if (ACT == 0) return x * glu_sigmoid(x);
  if (ACT == 1) return x * glu_sigmoid(gelu_u2(x));
  return 0.5f * x * erfcf(x * -0.7071067811865476f);
}
template <int ACT> KFN float act_df(float x) {
  if (ACT == 0) {
    const float s = glu_sigmoid(x);
    return s * (1.0f + x * (1.0f - s));
  }
  if (ACT == 1) {  // 0.5 (1 - tanh^2 u) = 2 s (1 - s)
    const float s = glu_sigmoid(gelu_u2(x));
    return s + 2.0f * x * s * (1.0f - s) * 0.7978845608028654f * (1.0f + float(3 * 0.044715) * x * x);
  }
  return 0.5f * erfcf(x * -0.7071067811865476f) + x * expf(-0.5f * x * x) * 0.3989422804014327f;
}

template <int ACT> KFN void glu_loop(const float* gate, const Strided& gs, const float* up, const Strided& us, float* out, i64 n) {
  KST_FOR(i, n) out[i] = act_f<ACT>(gate[offset_of(gs, i)]) * up[offset_of(us, i)];
}

// dgate = dy up act'(gate), dup = dy act(gate); either output may be null
template <int ACT> KFN void glu_backward_loop(const float* gate, const Strided& gs, const float* up, const Strided& us,
                                              const float* dy, const Strided& ds, float* dgate, float* dup, i64 n) {
  KST_FOR(i, n) {
    const float g = gate[offset_of(gs, i)], d = dy[offset_of(ds, i)];
    if (dgate) dgate[i] = d * up[offset_of(us, i)] * act_df<ACT>(g);
    if (dup) dup[i] = d * act_f<ACT>(g);
  }
}

KERNEL(glu_f32, (i32 act, const float* gate, Strided gs, const float* up, Strided us, float* out, i64 n)) {
  if (act == 0) glu_loop<0>(gate, gs, up, us, out, n);
  else if (act == 1) glu_loop<1>(gate, gs, up, us, out, n);
  else glu_loop<2>(gate, gs, up, us, out, n);
}

KERNEL(glu_backward_f32, (i32 act, const float* gate, Strided gs, const float* up, Strided us, const float* dy, Strided ds,
                          float* dgate, float* dup, i64 n)) {
  if (act == 0) glu_backward_loop<0>(gate, gs, up, us, dy, ds, dgate, dup, n);
  else if (act == 1) glu_backward_loop<1>(gate, gs, up, us, dy, ds, dgate, dup, n);
  else glu_backward_loop<2>(gate, gs, up, us, dy, ds, dgate, dup, n);
}

// ---------------------------------------------------------------- rotary embedding

// x and out [B, H, T, hd] (rows = B H T), cos/sin [B or 1, T, half]. A group of `group` threads
// (a power of two <= 32) per row, each taking pairs i, i + group, ...: (x1, x2) = (i, i + half)
// or (2i, 2i + 1); o1 = x1 c - x2 s, o2 = x2 c + x1 s, s negated when inverse. A thread reads
// its pair before writing it, so out may be x.
KERNEL(rope_f32, (const float* x, const float* cosv, const float* sinv, float* out, i64 rows, i64 H, i64 T, i64 half,
                  i32 group, i32 cos_batched, i32 interleaved, i32 inverse)) {
  const i64 gt = i64(blockIdx.x) * blockDim.x + threadIdx.x, step = i64(gridDim.x) * blockDim.x / group;
  const int lane = int(gt & (group - 1));
  for (i64 r = gt / group; r < rows; r += step) {
    const i64 b = r / (H * T), t = r % T;
    const i64 cs = ((cos_batched ? b : 0) * T + t) * half;
    const float* xr = x + r * 2 * half;
    float* orow = out + r * 2 * half;
    for (i64 i = lane; i < half; i += group) {
      const float c = cosv[cs + i], s = inverse ? -sinv[cs + i] : sinv[cs + i];
      const i64 i1 = interleaved ? 2 * i : i, i2 = interleaved ? 2 * i + 1 : i + half;
      const float x1 = xr[i1], x2 = xr[i2];
      orow[i1] = x1 * c - x2 * s;
      orow[i2] = x2 * c + x1 * s;
    }
  }
}
