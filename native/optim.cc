// Fused optimizer steps: one pass over parameter, gradient and state (PyTorch's AdamW
// formulas, decoupled weight decay): p *= 1 - lr wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps). The compiler vectorises the plain loop.
#include <cmath>
#include <string>

#include "kernel_api.h"

namespace kestrel {
namespace {

void check_same(const View& a, const View& b, const char* what) {
  if (a.dtype != F32 || !a.contiguous() || a.numel() != b.numel())
    throw KernelError(std::string("adamw: ") + what + " must be a contiguous float32 tensor of " + std::to_string(b.numel()) +
                      " elements, got " + dtype_name(a.dtype) + " " + shape_str(a));
}

}  // namespace

KESTREL_KERNEL(adamw) {
  View p = args.view(), g = args.view(), m = args.view(), v = args.view();
  const float lr = float(args.num()), b1 = float(args.num()), b2 = float(args.num()), eps = float(args.num());
  const float wd = float(args.num()), bc1 = float(args.num()), bc2 = float(args.num());
  args.done();
  check_same(p, p, "param");
  check_same(g, p, "grad");
  check_same(m, p, "exp_avg");
  check_same(v, p, "exp_avg_sq");
  float* P = p.ptr<float>();
  const float* G = g.ptr<float>();
  float* M = m.ptr<float>();
  float* V = v.ptr<float>();
  const float decay = 1.0f - lr * wd, step = lr / bc1, inv_sqrt_bc2 = 1.0f / std::sqrt(bc2);
  parallel_for(p.numel(), 1 << 15, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      const float gi = G[i];
      const float mi = b1 * M[i] + (1.0f - b1) * gi;
      const float vi = b2 * V[i] + (1.0f - b2) * gi * gi;
      M[i] = mi;
      V[i] = vi;
      P[i] = P[i] * decay - step * mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps);
    }
  });
}

}  // namespace kestrel
