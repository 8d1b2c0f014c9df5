// The fused row kernels: softmax, RMSNorm, LayerNorm, cross-entropy and rotary embedding,
// forward and backward (src/backend/kernels.ts documents each, src/ops/fused/*.ts the maths).
// This file reads and validates the packed arguments (the order src/backend/cpu/backend.ts
// packs them), then runs the body in nn_rows.inc compiled for AVX-512, AVX2+FMA or scalar.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernel_api.h"
#include "decode_parts.h"
#include "simd.h"

namespace kestrel {
namespace {

namespace isa_scalar {
using V = simd::Scalar;
#include "nn_rows.inc"
}  // namespace isa_scalar

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace isa_avx2 {
using V = simd::Avx2;
#include "nn_rows.inc"
}  // namespace isa_avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
namespace isa_avx512 {
using V = simd::Avx512;
#include "nn_rows.inc"
}  // namespace isa_avx512
#pragma GCC pop_options

#define KESTREL_DISPATCH(fn, ...)                                                   \
  do {                                                                              \
    switch (simd::level()) {                                                        \
      case 2: isa_avx512::fn(__VA_ARGS__); break;                                   \
      case 1: isa_avx2::fn(__VA_ARGS__); break;                                     \
      default: isa_scalar::fn(__VA_ARGS__);                                         \
    }                                                                               \
  } while (0)

// ------------------------------------------------------------------ argument checks


void need_f32(const char* kernel, const char* what, const View& v) {
  if (v.dtype != F32) fail(kernel, std::string(what) + " must be float32, got " + dtype_name(v.dtype) + " " + shape_str(v));
  if (!v.contiguous()) fail(kernel, std::string(what) + " " + shape_str(v) + " must be contiguous");
}

int64_t last_dim(const View& v) { return v.ndim ? v.shape[v.ndim - 1] : 1; }

bool same_shape(const View& a, const View& b) {
  if (a.ndim != b.ndim) return false;
  for (int i = 0; i < a.ndim; i++)
    if (a.shape[i] != b.shape[i]) return false;
  return true;
}

void need_same(const char* kernel, const char* what, const View& v, const View& like) {
  need_f32(kernel, what, v);
  if (!same_shape(v, like)) fail(kernel, std::string(what) + " " + shape_str(v) + " must have the input's shape " + shape_str(like));
}

// A float32 contiguous vector of n elements (rstd, mean, weights, per-row losses).
void need_vec(const char* kernel, const char* what, const View& v, int64_t n) {
  need_f32(kernel, what, v);
  if (v.numel() != n) fail(kernel, std::string(what) + " " + shape_str(v) + " must have " + std::to_string(n) + " elements");
}

const float* opt_vec(Args& args, const char* kernel, const char* what, int64_t n) {
  if (!args.has_view()) return nullptr;
  View v = args.view();
  need_vec(kernel, what, v, n);
  return v.ptr<float>();
}

float* opt_out_vec(Args& args, const char* kernel, const char* what, int64_t n) {
  return const_cast<float*>(opt_vec(args, kernel, what, n));
}

// Rows x D of a contiguous float32 input with at least `min_ndim` dims.
void rows_of(const char* kernel, const View& x, int min_ndim, int64_t* rows, int64_t* D) {
  need_f32(kernel, "input", x);
  if (x.ndim < min_ndim) fail(kernel, "input " + shape_str(x) + " needs at least " + std::to_string(min_ndim) + " dim(s)");
  *D = last_dim(x);
  *rows = 1;
  for (int i = 0; i + 1 < x.ndim; i++) *rows *= x.shape[i];
}

}  // namespace

// ------------------------------------------------------------------ softmax

KESTREL_KERNEL(softmax) {
  View x = args.view(), out = args.view();
  bool log = args.flag();
  args.done();
  int64_t rows, D;
  rows_of("softmax", x, 0, &rows, &D);
  need_same("softmax", "out", out, x);
  KESTREL_DISPATCH(softmax_forward, x.ptr<float>(), out.ptr<float>(), rows, D, log);
}

KESTREL_KERNEL(softmax_backward) {
  View y = args.view(), dy = args.view(), dx = args.view();
  bool log = args.flag();
  args.done();
  int64_t rows, D;
  rows_of("softmax_backward", y, 0, &rows, &D);
  need_same("softmax_backward", "dy", dy, y);
  need_same("softmax_backward", "dx", dx, y);
  KESTREL_DISPATCH(softmax_backward, y.ptr<float>(), dy.ptr<float>(), dx.ptr<float>(), rows, D, log);
}

// ------------------------------------------------------------------ RMSNorm

KESTREL_KERNEL(rms_norm) {
  const char* k = "rms_norm";
  View x = args.view();
  int64_t rows, D;
  rows_of(k, x, 1, &rows, &D);
  const float* w = opt_vec(args, k, "weight", D);
  float eps = float(args.num()), offset = float(args.num());
  View out = args.view(), rstd = args.view();
  args.done();
  need_same(k, "out", out, x);
  need_vec(k, "rstd", rstd, rows);
  KESTREL_DISPATCH(rms_norm_forward, x.ptr<float>(), w, eps, offset, out.ptr<float>(), rstd.ptr<float>(), rows, D);
}

KESTREL_KERNEL(rms_norm_backward) {
  const char* k = "rms_norm_backward";
  View x = args.view();
  int64_t rows, D;
  rows_of(k, x, 1, &rows, &D);
  const float* w = opt_vec(args, k, "weight", D);
  float offset = float(args.num());
  View rstd = args.view(), dy = args.view(), dx = args.view();
  float* dw = opt_out_vec(args, k, "dweight", D);
  args.done();
  need_vec(k, "rstd", rstd, rows);
  need_same(k, "dy", dy, x);
  need_same(k, "dx", dx, x);
  KESTREL_DISPATCH(rms_norm_backward, x.ptr<float>(), w, offset, rstd.ptr<float>(), dy.ptr<float>(), dx.ptr<float>(), dw,
                   rows, D);
}

// ------------------------------------------------------------------ LayerNorm

KESTREL_KERNEL(layer_norm) {
  const char* k = "layer_norm";
  View x = args.view();
  int64_t rows, D;
  rows_of(k, x, 1, &rows, &D);
  const float* w = opt_vec(args, k, "weight", D);
  const float* b = opt_vec(args, k, "bias", D);
  float eps = float(args.num());
  View out = args.view(), mean = args.view(), rstd = args.view();
  args.done();
  need_same(k, "out", out, x);
  need_vec(k, "mean", mean, rows);
  need_vec(k, "rstd", rstd, rows);
  KESTREL_DISPATCH(layer_norm_forward, x.ptr<float>(), w, b, eps, out.ptr<float>(), mean.ptr<float>(), rstd.ptr<float>(),
                   rows, D);
}

KESTREL_KERNEL(layer_norm_backward) {
  const char* k = "layer_norm_backward";
  View x = args.view();
  int64_t rows, D;
  rows_of(k, x, 1, &rows, &D);
  const float* w = opt_vec(args, k, "weight", D);
  View mean = args.view(), rstd = args.view(), dy = args.view(), dx = args.view();
  float* dw = opt_out_vec(args, k, "dweight", D);
  float* db = opt_out_vec(args, k, "dbias", D);
  args.done();
  need_vec(k, "mean", mean, rows);
  need_vec(k, "rstd", rstd, rows);
  need_same(k, "dy", dy, x);
  need_same(k, "dx", dx, x);
  KESTREL_DISPATCH(layer_norm_backward, x.ptr<float>(), w, mean.ptr<float>(), rstd.ptr<float>(), dy.ptr<float>(),
                   dx.ptr<float>(), dw, db, rows, D);
}

// ------------------------------------------------------------------ cross-entropy

namespace {

struct CrossEntropyArgs {
  int64_t N, Vn;
  const int64_t* target;
};

// logits [N, V] float32 and int64 targets [N], every target in [0, V) or equal to ignoreIndex;
// checked before anything is written.
CrossEntropyArgs check_cross_entropy(const char* k, const View& logits, const View& target, double ignore) {
  need_f32(k, "logits", logits);
  if (logits.ndim != 2) fail(k, "logits " + shape_str(logits) + " must be [N, V]");
  if (target.dtype != I64 || !target.contiguous())
    fail(k, std::string("target must be contiguous int64, got ") + dtype_name(target.dtype) + " " + shape_str(target));
  int64_t N = logits.shape[0], Vn = logits.shape[1];
  if (target.numel() != N) fail(k, "target " + shape_str(target) + " must have N = " + std::to_string(N) + " elements (logits " + shape_str(logits) + ")");
  if (ignore != std::floor(ignore) || std::fabs(ignore) > 9007199254740992.0) fail(k, "ignoreIndex must be an integer");
  const int64_t* t = target.ptr<int64_t>();
  for (int64_t r = 0; r < N; r++)
    if (t[r] != int64_t(ignore) && (t[r] < 0 || t[r] >= Vn))
      fail(k, "target " + std::to_string(t[r]) + " at row " + std::to_string(r) + " is out of range for " + std::to_string(Vn) +
                  " classes (and is not ignoreIndex " + std::to_string(int64_t(ignore)) + ")");
  return {N, Vn, t};
}

}  // namespace

KESTREL_KERNEL(cross_entropy) {
  const char* k = "cross_entropy";
  View logits = args.view(), target = args.view();
  double ignore = args.num(), eps = args.num();
  View loss = args.view(), lse = args.view();
  args.done();
  CrossEntropyArgs a = check_cross_entropy(k, logits, target, ignore);
  need_vec(k, "loss", loss, a.N);
  need_vec(k, "lse", lse, a.N);
  KESTREL_DISPATCH(cross_entropy_forward, logits.ptr<float>(), a.target, int64_t(ignore), float(eps), loss.ptr<float>(),
                   lse.ptr<float>(), a.N, a.Vn);
}

KESTREL_KERNEL(cross_entropy_backward) {
  const char* k = "cross_entropy_backward";
  View logits = args.view(), target = args.view(), lse = args.view(), dloss = args.view();
  double ignore = args.num(), eps = args.num();
  View dlogits = args.view();
  args.done();
  CrossEntropyArgs a = check_cross_entropy(k, logits, target, ignore);
  need_vec(k, "lse", lse, a.N);
  need_vec(k, "dloss", dloss, a.N);
  need_same(k, "dlogits", dlogits, logits);
  KESTREL_DISPATCH(cross_entropy_backward, logits.ptr<float>(), a.target, lse.ptr<float>(), dloss.ptr<float>(),
                   int64_t(ignore), float(eps), dlogits.ptr<float>(), a.N, a.Vn);
}

// ------------------------------------------------------------------ rotary embedding

KESTREL_KERNEL(rope) {
  const char* k = "rope";
  View x = args.view(), cs = args.view(), sn = args.view(), out = args.view();
  bool interleaved = args.flag(), inverse = args.flag();
  args.done();
  need_f32(k, "x", x);
  need_f32(k, "cos", cs);
  need_f32(k, "sin", sn);
  need_same(k, "out", out, x);
  if (x.ndim != 4 || x.shape[3] % 2 != 0) fail(k, "x " + shape_str(x) + " must be [B, H, T, hd] with an even hd");
  int64_t B = x.shape[0], H = x.shape[1], T = x.shape[2], hd = x.shape[3];
  bool ok = cs.ndim == 3 && (cs.shape[0] == B || cs.shape[0] == 1) && cs.shape[1] == T && cs.shape[2] == hd / 2 &&
            same_shape(cs, sn);
  if (!ok) fail(k, "cos " + shape_str(cs) + " / sin " + shape_str(sn) + " must be [B|1, T, hd/2] for x " + shape_str(x));
  KESTREL_DISPATCH(rope_forward, x.ptr<float>(), cs.ptr<float>(), sn.ptr<float>(), out.ptr<float>(), B, H, T, hd,
                   cs.shape[0] == B && B != 1, interleaved, inverse);
}

// ------------------------------------------------------------------ rows for the fused decode ops

// decode_parts.h: the fused decode kernels normalize and rotate through these, exactly as the
// rms_norm and rope kernels do, so a fused op equals its composite bit for bit where the products are the same.
void rms_norm_rows(const float* x, const float* w, float eps, float offset, float* out, float* rstd, int64_t rows, int64_t D) {
  KESTREL_DISPATCH(rms_norm_forward, x, w, eps, offset, out, rstd, rows, D);
}

void rope_heads(float* x, const float* cosv, const float* sinv, int64_t heads, int64_t hd, bool interleaved) {
  KESTREL_DISPATCH(rope_forward, x, cosv, sinv, x, 1, heads, 1, hd, false, interleaved, false);
}

}  // namespace kestrel
