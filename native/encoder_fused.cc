// Fused kernels of the BERT-style encoder layer (src/ops/fused/add_layer_norm.ts and
// bias_gelu.ts have the maths): LayerNorm(x + residual) in one pass that also keeps the sum for
// backward, and the bias-GELU pair, whose backward writes dz = dy act'(z) and sums the bias
// gradient from the same registers instead of a second pass over dz. Inputs are contiguous
// (the TS ops make them so); the spans (encoder_spans.inc) are compiled for SSE2, AVX2+FMA and
// AVX-512 and picked by simd::level(), as nn.cc's are. bfloat16 activations (under autocast)
// are read and written directly, rounded once from float32.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "kernel_api.h"
#include "simd.h"
#include "strided.h"

namespace kestrel {

#define KESTREL_VBYTES 16
namespace enc_sse2 {
#include "simd_math.h"
#include "glu_spans.inc"
#include "encoder_spans.inc"
}  // namespace enc_sse2
#undef KESTREL_VBYTES

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define KESTREL_VBYTES 32
namespace enc_avx2 {
#include "simd_math.h"
#include "glu_spans.inc"
#include "encoder_spans.inc"
}  // namespace enc_avx2
#undef KESTREL_VBYTES
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#define KESTREL_VBYTES 64
namespace enc_avx512 {
#include "simd_math.h"
#include "glu_spans.inc"
#include "encoder_spans.inc"
}  // namespace enc_avx512
#undef KESTREL_VBYTES
#pragma GCC pop_options

namespace {

#define ENC_DISPATCH(fn, ...)                            \
  do {                                                   \
    switch (simd::level()) {                             \
      case 2: enc_avx512::fn(__VA_ARGS__); break;        \
      case 1: enc_avx2::fn(__VA_ARGS__); break;          \
      default: enc_sse2::fn(__VA_ARGS__);                \
    }                                                    \
  } while (0)

// a contiguous view of float32 (or, where allowed, bfloat16) with `like`'s shape when given
void need(const char* k, const char* what, const View& v, const View* like, bool bf16_ok = false) {
  if (v.dtype != F32 && !(bf16_ok && v.dtype == BF16))
    fail(k, std::string(what) + " must be float32" + (bf16_ok ? " or bfloat16" : "") + ", got " + dtype_name(v.dtype) + " " + shape_str(v));
  if (like) require_same_shape(k, *like, "input", v, what);
  require_contiguous(k, v, what);
}

// [rows, D] of a contiguous input with at least one dim
void rows_of(const char* k, const View& x, int64_t* rows, int64_t* D) {
  need(k, "input", x, nullptr);
  if (x.ndim < 1) fail(k, "input " + shape_str(x) + " needs at least 1 dim");
  *D = x.shape[x.ndim - 1];
  *rows = *D ? x.numel() / *D : 0;
}

// an optional float32 vector of n elements (weight, bias, their gradients)
float* opt_vec(Args& args, const char* k, const char* what, int64_t n) {
  if (!args.has_view()) return nullptr;
  View v = args.view();
  need(k, what, v, nullptr);
  if (v.numel() != n) fail(k, std::string(what) + " " + shape_str(v) + " must have " + std::to_string(n) + " elements");
  return v.ptr<float>();
}

int act_code(const char* k, int64_t act) {
  if (act < 0 || act > 2) fail(k, "unknown activation code " + std::to_string(act));
  return int(act);
}

int64_t grain_rows(int64_t D) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(D, 1)); }

}  // namespace

// out = LayerNorm(x + residual); sum = x + residual, mean and rstd [rows] for backward
KESTREL_KERNEL(add_layer_norm) {
  const char* k = "add_layer_norm";
  View x = args.view(), res = args.view();
  int64_t rows, D;
  rows_of(k, x, &rows, &D);
  need(k, "residual", res, &x);
  const float* w = opt_vec(args, k, "weight", D);
  const float* b = opt_vec(args, k, "bias", D);
  const float eps = float(args.num());
  View out = args.view(), sum = args.view();
  float* mean = opt_vec(args, k, "mean", rows);
  float* rstd = opt_vec(args, k, "rstd", rows);
  args.done();
  need(k, "out", out, &x);
  need(k, "sum", sum, &x);
  if (!mean || !rstd) fail(k, "mean and rstd are required");
  parallel_run(rows, grain_rows(D), [&](int64_t r0, int64_t r1) {
    ENC_DISPATCH(add_layer_norm_rows, x.ptr<float>(), res.ptr<float>(), w, b, eps, out.ptr<float>(), sum.ptr<float>(), mean,
                 rstd, r0, r1, D);
  });
}

// y = act(z); z float32, y float32 or bfloat16 (rounded once)
KESTREL_KERNEL(bias_gelu) {
  const char* k = "bias_gelu";
  const int act = act_code(k, args.i64());
  View z = args.view(), y = args.view();
  args.done();
  need(k, "z", z, nullptr);
  need(k, "out", y, &z, true);
  const bool bf = y.dtype == BF16;
  char* yp = bf ? reinterpret_cast<char*>(y.ptr<uint16_t>()) : reinterpret_cast<char*>(y.ptr<float>());
  const size_t esz = bf ? 2 : 4;
  parallel_run(z.numel(), 16384, [&](int64_t i0, int64_t i1) {
    ENC_DISPATCH(act_forward, act, z.ptr<float>() + i0, yp + i0 * esz, bf, i1 - i0);
  });
}

// dz = dy act'(z) over z [rows, N]; dbias [N] = sum_rows dz (optional). dy and dz float32 or
// bfloat16 (dz may be dy's buffer); the bias gradient sums float32 values without atomics: each
// thread's rows go to its own partial row, added up column by column at the end.
KESTREL_KERNEL(bias_gelu_backward) {
  const char* k = "bias_gelu_backward";
  const int act = act_code(k, args.i64());
  View z = args.view(), dy = args.view(), dz = args.view();
  int64_t rows, N;
  rows_of(k, z, &rows, &N);
  float* db = opt_vec(args, k, "dbias", N);
  args.done();
  need(k, "dy", dy, &z, true);
  need(k, "dz", dz, &z, true);
  const bool gbf = dy.dtype == BF16, dbf = dz.dtype == BF16;
  const char* gp = gbf ? reinterpret_cast<const char*>(dy.ptr<uint16_t>()) : reinterpret_cast<const char*>(dy.ptr<float>());
  char* dp = dbf ? reinterpret_cast<char*>(dz.ptr<uint16_t>()) : reinterpret_cast<char*>(dz.ptr<float>());
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(rows, num_threads()));
  std::vector<float> parts(db ? size_t(chunks * N) : 0, 0.0f);
  parallel_run(chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) {
      const int64_t r0 = rows * c / chunks, r1 = rows * (c + 1) / chunks;
      ENC_DISPATCH(act_backward_rows, act, z.ptr<float>(), gp, gbf, dp, dbf, db ? parts.data() + c * N : nullptr, r0, r1, N);
    }
  });
  if (!db) return;
  for (int64_t j = 0; j < N; j++) db[j] = 0;
  for (int64_t c = 0; c < chunks; c++)
    for (int64_t j = 0; j < N; j++) db[j] += parts[size_t(c * N + j)];
}

}  // namespace kestrel
