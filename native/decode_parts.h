// What the fused decode kernels (decode_qkv.cc, decode_mlp.cc) share: reading the weight parts of
// a projection from the packed arguments (src/backend/cpu/decode.ts packs them), normalizing the
// rows of x (RMSNorm), and the projection itself: y [M, N] = xn [W0 | W1 | ...]ᵀ + biases, each part
// a quantized weight (quant_gemv: read once, activations quantized once) or a float32 one (sgemm's
// small-M path).
#pragma once
#include <cstdint>

#include "kernel_api.h"
#include "quant_weight.h"

namespace kestrel {

// One block of output columns: a quantized weight, or a float32 one [N, K] (w != nullptr).
struct DecodePart {
  QuantWeight q;
  const float* w = nullptr;
  int64_t N = 0;
  const float* bias = nullptr;
};

// The parts of a projection of K inputs: 1 to kMaxDecodeParts, no allocation (a decode step's).
constexpr int kMaxDecodeParts = 3;
struct DecodeProjection {
  DecodePart parts[kMaxDecodeParts];
  int64_t count = 0;
  int64_t N = 0;  // the parts' outputs together
};

// A contiguous float32 view with exactly the shape [rows, cols] (or [cols] when rows < 0).
const float* decode_f32(const char* k, const char* what, const View& v, int64_t rows, int64_t cols);

// x [M, K] (contiguous float32) and the RMSNorm in front of the projection (normalize false: none).
struct DecodeNorm {
  const float* x;
  int64_t M, K;
  const float* weight;
  float eps, offset;
  bool normalize = true;
};
// Reads x, the norm weight (or none), eps and offset.
DecodeNorm read_decode_norm(Args& args, const char* k);

// Reads the count and the parts (1 = quantized: read_weight's fields; 0: a float32 view), each with
// its optional bias; checks every part takes K inputs and, if M > kGemvMaxRows, none is quantized.
DecodeProjection read_decode_projection(Args& args, const char* k, int64_t K, int64_t M);

// y [M, N] (row stride ldy) = RMSNorm(x) [parts]ᵀ + biases (x itself where !n.normalize).
void decode_norm_project(const DecodeNorm& n, const DecodeProjection& p, float* y, int64_t ldy);

// RMSNorm of rows x D values (nn.cc's rms_norm kernel body; rstd [rows] written too).
void rms_norm_rows(const float* x, const float* w, float eps, float offset, float* out, float* rstd, int64_t rows, int64_t D);
// RoPE in place on `heads` contiguous heads of hd values with one cos/sin row (nn.cc's rope body).
void rope_heads(float* x, const float* cosv, const float* sinv, int64_t heads, int64_t hd, bool interleaved);

// out[i] = act(gate[i]) * up[i] for i < n (act: 0 silu, 1 gelu_tanh, 2 gelu_erf; glu.cc's spans).
void glu_span(int act, const float* gate, const float* up, float* out, int64_t n);

}  // namespace kestrel
