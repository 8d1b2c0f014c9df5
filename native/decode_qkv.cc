// The decode step's attention input in one call (src/ops/fused/rms_norm_qkv_rope.ts has the maths):
//   xn = x rstd (offset + g),  rstd = 1 / sqrt(mean(x^2) + eps)          (RMSNorm, per row)
//   y  = xn [Wq | Wk | Wv]ᵀ + [bq | bk | bv]                             (one GEMV over the merged rows)
//   q, k = rope(y[:, q cols], cos, sin), rope(y[:, k cols], cos, sin)    (in place, per head)
// for M <= 8 rows of x (batch-1 or small-batch decoding), each row with its own position's cos/sin.
// The weight comes in parts (decode_parts.h): one merged quantized weight, or float32 Wq, Wk, Wv
// kept apart. The norm and the rotation are the rms_norm and rope kernels' bodies (nn.cc), so the
// values equal the separate ops' wherever the products are the same calls; what the fusion saves
// is the ten-odd op calls (and their tensors) a layer's composite makes per token.
#include <string>

#include "decode_parts.h"

namespace kestrel {
KESTREL_KERNEL(rms_norm_qkv_rope) {
  const char* k = "rms_norm_qkv_rope";
  const DecodeNorm n = read_decode_norm(args, k);
  const DecodeProjection p = read_decode_projection(args, k, n.K, n.M);
  View cv = args.view(), sv = args.view();
  const int64_t H = args.i64(), Hkv = args.i64(), hd = args.i64();
  const bool interleaved = args.flag();
  View out = args.view();
  args.done();
  if (H < 1 || Hkv < 1 || hd < 2 || hd % 2 != 0 || H % Hkv != 0)
    fail(k, "heads H=" + std::to_string(H) + " Hkv=" + std::to_string(Hkv) + " hd=" + std::to_string(hd) + " (need hd even, H a multiple of Hkv)");
  const int64_t M = n.M, N = p.N;
  if (N != (H + 2 * Hkv) * hd)
    fail(k, "the weight parts give " + std::to_string(N) + " outputs; (H + 2 Hkv) hd = " + std::to_string((H + 2 * Hkv) * hd));
  const float* cs = decode_f32(k, "cos", cv, M, hd / 2);
  const float* sn = decode_f32(k, "sin", sv, M, hd / 2);
  float* y = const_cast<float*>(decode_f32(k, "out", out, M, N));
  decode_norm_project(n, p, y, N);
  for (int64_t m = 0; m < M; m++) {
    const float* c = cs + m * (hd / 2);
    const float* s = sn + m * (hd / 2);
    rope_heads(y + m * N, c, s, H, hd, interleaved);             // q
    rope_heads(y + m * N + H * hd, c, s, Hkv, hd, interleaved);  // k (v is not rotated)
  }
}

}  // namespace kestrel
