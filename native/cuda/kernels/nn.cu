// softmax / log-softmax over the last dim with its backward, the gated activation (glu) with its
// backward, and rotary embedding: the formulas of src/ops/fused/*.ts in float32, as native/nn.cc
// and native/glu.cc compute them; bfloat16/float16 storage is loaded into float and rounded once
// when stored (= the float32 kernel on upcast inputs, cast back). softmax runs a row per warp or
// per block (rows.cuh) with an online max/sum, so x is read twice; glu and rope are elementwise.
#include "rows.cuh"

using namespace kst;

// ---------------------------------------------------------------- softmax

// softmax: y = exp(x - max) / sum;  log-softmax: y = x - max - log(sum). x and y of any float
// storage (TX, TY): loaded into float, y rounded once.
template <bool WARP, class TX, class TY> KFN void softmax_impl(const TX* x, TY* y, i64 rows, i64 D, i32 log) {
  __shared__ float sm[32], ss[32];
  const int lane = Row<WARP>::lane(), width = Row<WARP>::width();
  for (i64 r = Row<WARP>::first(); r < rows; r += Row<WARP>::step()) {
    const TX* xr = x + r * D;
    TY* yr = y + r * D;
    MaxSum a = max_sum_empty();
    for (i64 j = lane; j < D; j += width) a = max_sum_add(a, to_float(xr[j]));
    a = row_max_sum<WARP>(a, sm, ss);
    if (log) {
      const float c = a.m + logf(a.s);
      for (i64 j = lane; j < D; j += width) yr[j] = from_float<TY>(to_float(xr[j]) - c);
    } else {
      const float inv = 1.0f / a.s;
      for (i64 j = lane; j < D; j += width) yr[j] = from_float<TY>(expf(to_float(xr[j]) - a.m) * inv);
    }
  }
}

// softmax: dx = y (dy - sum(dy y));  log-softmax: dx = dy - exp(y) sum(dy). y of storage TY,
// dy/dx of storage TG (a float32 y with half gradients: the half path's recomputed y).
template <bool WARP, class TY, class TG> KFN void softmax_backward_impl(const TY* y, const TG* dy, TG* dx, i64 rows, i64 D, i32 log) {
  __shared__ float scratch[32];
  const int lane = Row<WARP>::lane(), width = Row<WARP>::width();
  for (i64 r = Row<WARP>::first(); r < rows; r += Row<WARP>::step()) {
    const TY* yr = y + r * D;
    const TG* gr = dy + r * D;
    TG* dr = dx + r * D;
    float dot = 0.0f;
    for (i64 j = lane; j < D; j += width) dot += log ? to_float(gr[j]) : to_float(gr[j]) * to_float(yr[j]);
    dot = Row<WARP>::sum(dot, scratch);
    if (log)
      for (i64 j = lane; j < D; j += width) dr[j] = from_float<TG>(to_float(gr[j]) - expf(to_float(yr[j])) * dot);
    else
      for (i64 j = lane; j < D; j += width) dr[j] = from_float<TG>(to_float(yr[j]) * (to_float(gr[j]) - dot));
  }
}

// softmax_<form>_<x>[_<y>] and softmax_backward_<form>_<y>[_<dy>] (the second suffix when the types differ)
#define KST_SOFTMAX(sfx, TX, TY)                                                                                     \
  KERNEL(softmax_warp_##sfx, (const TX* x, TY* y, i64 rows, i64 D, i32 log)) { softmax_impl<true>(x, y, rows, D, log); }  \
  KERNEL(softmax_block_##sfx, (const TX* x, TY* y, i64 rows, i64 D, i32 log)) { softmax_impl<false>(x, y, rows, D, log); }
#define KST_SOFTMAX_BACKWARD(sfx, TY, TG)                                                                            \
  KERNEL(softmax_backward_warp_##sfx, (const TY* y, const TG* dy, TG* dx, i64 rows, i64 D, i32 log)) {                \
    softmax_backward_impl<true>(y, dy, dx, rows, D, log);                                                            \
  }                                                                                                                  \
  KERNEL(softmax_backward_block_##sfx, (const TY* y, const TG* dy, TG* dx, i64 rows, i64 D, i32 log)) {               \
    softmax_backward_impl<false>(y, dy, dx, rows, D, log);                                                           \
  }
KST_SOFTMAX(f32, float, float)
KST_SOFTMAX(bf16, bf16, bf16)
KST_SOFTMAX(f16, f16, f16)
KST_SOFTMAX(bf16_f32, bf16, float)
KST_SOFTMAX(f16_f32, f16, float)
KST_SOFTMAX_BACKWARD(f32, float, float)
KST_SOFTMAX_BACKWARD(bf16, bf16, bf16)
KST_SOFTMAX_BACKWARD(f16, f16, f16)
KST_SOFTMAX_BACKWARD(f32_bf16, float, bf16)
KST_SOFTMAX_BACKWARD(f32_f16, float, f16)

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

template <int ACT, class T> KFN void glu_loop(const T* gate, const Strided& gs, const T* up, const Strided& us, T* out, i64 n) {
  KST_FOR(i, n) out[i] = from_float<T>(act_f<ACT>(to_float(gate[offset_of(gs, i)])) * to_float(up[offset_of(us, i)]));
}

// dgate = dy up act'(gate), dup = dy act(gate); either output may be null
template <int ACT, class T> KFN void glu_backward_loop(const T* gate, const Strided& gs, const T* up, const Strided& us,
                                                       const T* dy, const Strided& ds, T* dgate, T* dup, i64 n) {
  KST_FOR(i, n) {
    const float g = to_float(gate[offset_of(gs, i)]), d = to_float(dy[offset_of(ds, i)]);
    if (dgate) dgate[i] = from_float<T>(d * to_float(up[offset_of(us, i)]) * act_df<ACT>(g));
    if (dup) dup[i] = from_float<T>(d * act_f<ACT>(g));
  }
}

// gate, up, dy and the outputs share one storage type: float32, or bf16/f16 computed in float.
#define KST_GLU(sfx, T)                                                                                              \
  KERNEL(glu_##sfx, (i32 act, const T* gate, Strided gs, const T* up, Strided us, T* out, i64 n)) {                   \
    if (act == 0) glu_loop<0>(gate, gs, up, us, out, n);                                                             \
    else if (act == 1) glu_loop<1>(gate, gs, up, us, out, n);                                                        \
    else glu_loop<2>(gate, gs, up, us, out, n);                                                                      \
  }                                                                                                                  \
  KERNEL(glu_backward_##sfx, (i32 act, const T* gate, Strided gs, const T* up, Strided us, const T* dy, Strided ds,   \
                              T* dgate, T* dup, i64 n)) {                                                            \
    if (act == 0) glu_backward_loop<0>(gate, gs, up, us, dy, ds, dgate, dup, n);                                     \
    else if (act == 1) glu_backward_loop<1>(gate, gs, up, us, dy, ds, dgate, dup, n);                                \
    else glu_backward_loop<2>(gate, gs, up, us, dy, ds, dgate, dup, n);                                              \
  }
KST_GLU(f32, float)
KST_GLU(bf16, bf16)
KST_GLU(f16, f16)

// ---------------------------------------------------------------- rotary embedding

// x and out [B, H, T, hd] (rows = B H T), cos/sin [B or 1, T, half] float32. A group of `group`
// threads (a power of two <= 32) per row, each taking pairs i, i + group, ...: (x1, x2) = (i, i + half)
// or (2i, 2i + 1); o1 = x1 c - x2 s, o2 = x2 c + x1 s, s negated when inverse. A thread reads
// its pair before writing it, so out may be x. x/out float32, or bf16/f16 computed in float.
template <class T> KFN void rope_impl(const T* x, const float* cosv, const float* sinv, T* out, i64 rows, i64 H, i64 T_,
                                      i64 half, i32 group, i32 cos_batched, i32 interleaved, i32 inverse) {
  const i64 gt = i64(blockIdx.x) * blockDim.x + threadIdx.x, step = i64(gridDim.x) * blockDim.x / group;
  const int lane = int(gt & (group - 1));
  for (i64 r = gt / group; r < rows; r += step) {
    const i64 b = r / (H * T_), t = r % T_;
    const i64 cs = ((cos_batched ? b : 0) * T_ + t) * half;
    const T* xr = x + r * 2 * half;
    T* orow = out + r * 2 * half;
    for (i64 i = lane; i < half; i += group) {
      const float c = cosv[cs + i], s = inverse ? -sinv[cs + i] : sinv[cs + i];
      const i64 i1 = interleaved ? 2 * i : i, i2 = interleaved ? 2 * i + 1 : i + half;
      const float x1 = to_float(xr[i1]), x2 = to_float(xr[i2]);
      orow[i1] = from_float<T>(x1 * c - x2 * s);
      orow[i2] = from_float<T>(x2 * c + x1 * s);
    }
  }
}

#define KST_ROPE(sfx, T)                                                                                              \
  KERNEL(rope_##sfx, (const T* x, const float* cosv, const float* sinv, T* out, i64 rows, i64 H, i64 T_, i64 half,    \
                      i32 group, i32 cos_batched, i32 interleaved, i32 inverse)) {                                    \
    rope_impl<T>(x, cosv, sinv, out, rows, H, T_, half, group, cos_batched, interleaved, inverse);                    \
  }
KST_ROPE(f32, float)
KST_ROPE(bf16, bf16)
KST_ROPE(f16, f16)
