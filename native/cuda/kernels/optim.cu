// Fused optimizer steps over contiguous float32 parameter, gradient and state, as native/optim.cc
// computes them (PyTorch's AdamW, decoupled weight decay): p *= 1 - lr wd; m = b1 m + (1-b1) g;
// v = b2 v + (1-b2) g^2; p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps). One grid-stride pass.
#include "common.cuh"

using namespace kst;

KERNEL(adamw_f32, (float* p, const float* g, float* m, float* v, i64 n, float lr, float b1, float b2, float eps, float wd,
                   float bc1, float bc2)) {
  const float decay = 1.0f - lr * wd, step = lr / bc1, inv_sqrt_bc2 = 1.0f / sqrtf(bc2);
  KST_FOR(i, n) {
    const float gi = g[i];
    const float mi = b1 * m[i] + (1.0f - b1) * gi;
    const float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
  }
}
