// Cross-entropy of logits [N, V] (float32) against int64 targets [N], forward and backward, as
// native/nn_rows.inc computes it (src/ops/fused/cross_entropy.ts has the maths); a row per warp
// or per block (rows.cuh). check_targets records the first target outside [0, V) that is not
// ignoreIndex for the next host read to report; the loss kernels never index memory with a
// target (an out-of-range target gives a NaN loss for its row).
#include "rows.cuh"

using namespace kst;

// Records the first row whose target is out of range in the device error record `err` (flag, op,
// row, target, V, launch id: src/backend/cuda/index_errors.ts reads it at the next host read).
// One block: the targets are N int64 (8 N bytes), a small read next to the N V logits the loss reads.
KERNEL(check_targets_i64, (const i64* target, i64 N, i64 V, i64 ignore, i64* err, i64 op, i64 id)) {
  __shared__ i64 first[32];
  const i64 none = 0x7fffffffffffffffLL;
  i64 row = none;
  for (i64 r = threadIdx.x; r < N && row == none; r += blockDim.x) {
    const i64 t = target[r];
    if (t != ignore && (t < 0 || t >= V)) row = r;
  }
  for (int k = 16; k > 0; k >>= 1) {
    const i64 o = shfl_xor(row, k);
    row = o < row ? o : row;
  }
  const int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) first[w] = row;
  sync();
  if (threadIdx.x == 0) {
    for (int k = 1; k < nw; k++) row = first[k] < row ? first[k] : row;
    if (row != none) record_error(err, op, id, row, target[row], V);
  }
}

// lse = logsumexp(x); loss = (1 - eps)(lse - x_t) + eps (lse - mean(x)); ignored rows: loss 0
template <bool WARP> KFN void cross_entropy_impl(const float* x, const i64* target, i64 ignore, float eps, float* loss, float* lse,
                                                 i64 N, i64 V) {
  __shared__ float sm[32], ss[32];
  const int lane = Row<WARP>::lane(), width = Row<WARP>::width();
  for (i64 r = Row<WARP>::first(); r < N; r += Row<WARP>::step()) {
    const float* xr = x + r * V;
    MaxSum a = max_sum_empty();
    float sx = 0.0f;
    for (i64 j = lane; j < V; j += width) {
      a = max_sum_add(a, xr[j]);
      sx += xr[j];
    }
    a = row_max_sum<WARP>(a, sm, ss);
    if (eps != 0.0f) sx = Row<WARP>::sum(sx, sm);
    if (lane != 0) continue;
    const float z = a.m + logf(a.s);
    const i64 t = target[r];
    lse[r] = z;
    if (t == ignore) loss[r] = 0.0f;
    else if (t < 0 || t >= V) loss[r] = bits_to_float(0x7fc00000u);
    else loss[r] = (1.0f - eps) * (z - xr[t]) + (eps != 0.0f ? eps * (z - sx / float(V)) : 0.0f);
  }
}

// dx_j = dloss (exp(x_j - lse) - eps / V) - dloss (1 - eps) [j = t]; ignored rows: 0. Each logit
// is read by the thread that writes its gradient, so dlogits may be the logits.
template <bool WARP> KFN void cross_entropy_backward_impl(const float* x, const i64* target, const float* lse, const float* dloss,
                                                          i64 ignore, float eps, float* dx, i64 N, i64 V) {
  const int lane = Row<WARP>::lane(), width = Row<WARP>::width();
  for (i64 r = Row<WARP>::first(); r < N; r += Row<WARP>::step()) {
    const float* xr = x + r * V;
    float* dr = dx + r * V;
    const i64 t = target[r];
    if (t == ignore) {
      for (i64 j = lane; j < V; j += width) dr[j] = 0.0f;
      continue;
    }
    const float g = dloss[r], z = lse[r], u = eps / float(V), gt = g * (1.0f - eps);
    for (i64 j = lane; j < V; j += width) {
      float d = g * (expf(xr[j] - z) - u);
      if (j == t) d -= gt;
      dr[j] = d;
    }
  }
}

KERNEL(cross_entropy_warp_f32, (const float* x, const i64* target, i64 ignore, float eps, float* loss, float* lse, i64 N, i64 V)) {
  cross_entropy_impl<true>(x, target, ignore, eps, loss, lse, N, V);
}
KERNEL(cross_entropy_block_f32, (const float* x, const i64* target, i64 ignore, float eps, float* loss, float* lse, i64 N, i64 V)) {
  cross_entropy_impl<false>(x, target, ignore, eps, loss, lse, N, V);
}
KERNEL(cross_entropy_backward_warp_f32, (const float* x, const i64* target, const float* lse, const float* dloss, i64 ignore,
                                         float eps, float* dx, i64 N, i64 V)) {
  cross_entropy_backward_impl<true>(x, target, lse, dloss, ignore, eps, dx, N, V);
}
KERNEL(cross_entropy_backward_block_f32, (const float* x, const i64* target, const float* lse, const float* dloss, i64 ignore,
                                          float eps, float* dx, i64 N, i64 V)) {
  cross_entropy_backward_impl<false>(x, target, lse, dloss, ignore, eps, dx, N, V);
}
