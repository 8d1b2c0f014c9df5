// Fused optimizer steps over contiguous float32 parameter, gradient and state, as native/optim.cc
// computes them (PyTorch's AdamW, decoupled weight decay): p *= 1 - lr wd; m = b1 m + (1-b1) g;
// v = b2 v + (1-b2) g^2; p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps).
// adamw_f32: one tensor, a grid-stride pass. adamw_multi_f32: every tensor of a parameter group in
// one launch (apex's multi-tensor apply): a table of the tensors' addresses and sizes, and one
// block per chunk of a tensor, so small tensors (norm weights, biases) cost no launch each.
#include "common.cuh"

using namespace kst;

struct AdamParams {
  float lr, b1, b2, eps, wd, bc1, bc2;
};

KFN void adamw_element(float* p, const float* g, float* m, float* v, i64 i, const AdamParams& a) {
  const float decay = 1.0f - a.lr * a.wd, step = a.lr / a.bc1, inv_sqrt_bc2 = 1.0f / sqrtf(a.bc2);
  const float gi = g[i];
  const float mi = a.b1 * m[i] + (1.0f - a.b1) * gi;
  const float vi = a.b2 * v[i] + (1.0f - a.b2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  p[i] = p[i] * decay - step * mi / (sqrtf(vi) * inv_sqrt_bc2 + a.eps);
}

KERNEL(adamw_f32, (float* p, const float* g, float* m, float* v, i64 n, float lr, float b1, float b2, float eps, float wd,
                   float bc1, float bc2)) {
  AdamParams a;
  a.lr = lr; a.b1 = b1; a.b2 = b2; a.eps = eps; a.wd = wd; a.bc1 = bc1; a.bc2 = bc2;
  KST_FOR(i, n) adamw_element(p, g, m, v, i, a);
}

// tensors: [count] x {param, grad, exp_avg, exp_avg_sq, numel} as five 64-bit words; chunks: per
// block, {tensor index, first element}; each block updates [first, first + chunk) of its tensor.
KERNEL(adamw_multi_f32, (const u64* tensors, const i64* chunks, i64 chunk, float lr, float b1, float b2, float eps, float wd,
                         float bc1, float bc2)) {
  AdamParams a;
  a.lr = lr; a.b1 = b1; a.b2 = b2; a.eps = eps; a.wd = wd; a.bc1 = bc1; a.bc2 = bc2;
  const u64* t = tensors + 5 * chunks[2 * blockIdx.x];
  float* p = (float*)t[0];
  const float* g = (const float*)t[1];
  float* m = (float*)t[2];
  float* v = (float*)t[3];
  const i64 n = i64(t[4]), first = chunks[2 * blockIdx.x + 1];
  const i64 end = first + chunk < n ? first + chunk : n;
  for (i64 i = first + threadIdx.x; i < end; i += blockDim.x) adamw_element(p, g, m, v, i, a);
}
