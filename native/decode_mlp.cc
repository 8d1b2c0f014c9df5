// The decode step's gated MLP input in one call (src/ops/fused/rms_norm_gate_up_glu.ts has the maths):
//   xn = RMSNorm(x),  [gate | up] = xn [Wgate | Wup]ᵀ + biases,  out = act(gate) * up
// for a few rows of x: the gate and up rows merged into one weight (one GEMV, activations read and
// quantized once) or float32 Wgate, Wup apart (decode_parts.h); act as glu.cc computes it, so the
// fused and composite paths agree to rounding.
#include <string>

#include "decode_parts.h"

namespace kestrel {
namespace {
thread_local ScratchBuffer gate_up{"rms_norm_gate_up_glu gate|up rows"};
}  // namespace

KESTREL_KERNEL(rms_norm_gate_up_glu) {
  const char* k = "rms_norm_gate_up_glu";
  const DecodeNorm n = read_decode_norm(args, k);
  const DecodeProjection p = read_decode_projection(args, k, n.K, n.M);
  const int64_t act = args.i64();
  View out = args.view();
  args.done();
  if (act < 0 || act > 2) fail(k, "unknown activation code " + std::to_string(act) + " (0 silu, 1 gelu_tanh, 2 gelu_erf)");
  if (p.N % 2 != 0) fail(k, "the weight parts give " + std::to_string(p.N) + " outputs; gate and up need an even count");
  // two parts are gate then up ([F, K] each); one part is the merged [2F, K] gate|up
  if (p.count > 2 || (p.count == 2 && p.parts[0].N != p.parts[1].N))
    fail(k, "gate and up must be one merged part or two parts of equal rows, got " + std::to_string(p.count) + " parts");
  const int64_t M = n.M, F = p.N / 2;
  float* o = const_cast<float*>(decode_f32(k, "out", out, M, F));
  float* y = gate_up.get(size_t(M * p.N));
  decode_norm_project(n, p, y, p.N);
  for (int64_t m = 0; m < M; m++) glu_span(int(act), y + m * p.N, y + m * p.N + F, o + m * F, F);
}

}  // namespace kestrel
