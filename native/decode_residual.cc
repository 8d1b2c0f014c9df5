// A decode step's output projection with the residual sum in its output (src/ops/fused/linear_residual.ts
// has the maths): out = x Wᵀ + b + residual for a few rows of x, the attention's o_proj and the MLP's
// down_proj of a pre-norm decoder layer. One kernel call instead of the product and an add, and no
// [M, N] tensor between them.
#include <string>

#include "decode_parts.h"

namespace kestrel {

KESTREL_KERNEL(linear_residual) {
  const char* k = "linear_residual";
  View xv = args.view();
  if (xv.ndim != 2) fail(k, "x " + shape_str(xv) + " must be 2-d [rows, features]");
  DecodeNorm n{nullptr, xv.shape[0], xv.shape[1], nullptr, 0, 0, false};
  n.x = decode_f32(k, "x", xv, n.M, n.K);
  const DecodeProjection p = read_decode_projection(args, k, n.K, n.M);
  View rv = args.view(), out = args.view();
  args.done();
  const float* r = decode_f32(k, "residual", rv, n.M, p.N);
  float* y = const_cast<float*>(decode_f32(k, "out", out, n.M, p.N));
  decode_norm_project(n, p, y, p.N);
  for (int64_t i = 0; i < n.M * p.N; i++) y[i] += r[i];
}

}  // namespace kestrel
