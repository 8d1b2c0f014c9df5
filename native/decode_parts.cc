// The shared half of the fused decode kernels (decode_parts.h): argument reading, RMSNorm of a few
// rows (the rms_norm kernel's own body, so the normalized rows equal the separate op's bit for bit)
// and the projection through each part.
#include "decode_parts.h"

#include <algorithm>
#include <string>

#include "gemm.h"

namespace kestrel {

namespace {
thread_local ScratchBuffer normed{"fused decode: normalized rows"};
}  // namespace

const float* decode_f32(const char* k, const char* what, const View& v, int64_t rows, int64_t cols) {
  bool shape_ok = rows < 0 ? v.ndim == 1 && v.shape[0] == cols : v.ndim == 2 && v.shape[0] == rows && v.shape[1] == cols;
  if (v.dtype != F32) fail(k, std::string(what) + " must be float32, got " + dtype_name(v.dtype) + " " + shape_str(v));
  if (!shape_ok) {  // the message is built only here: this runs for every argument of every decode step
    std::string want = rows < 0 ? "[" + std::to_string(cols) + "]" : "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
    fail(k, std::string(what) + " " + shape_str(v) + " must be " + want);
  }
  if (!v.contiguous()) fail(k, std::string(what) + " " + shape_str(v) + " must be contiguous");
  return v.ptr<float>();
}

DecodeNorm read_decode_norm(Args& args, const char* k) {
  View xv = args.view();
  if (xv.ndim != 2) fail(k, "x " + shape_str(xv) + " must be 2-d [rows, features]");
  DecodeNorm n{nullptr, xv.shape[0], xv.shape[1], nullptr, 0, 0, true};
  n.x = decode_f32(k, "x", xv, n.M, n.K);
  n.weight = args.has_view() ? decode_f32(k, "norm weight", args.view(), -1, n.K) : nullptr;
  n.eps = float(args.num());
  n.offset = float(args.num());
  return n;
}

DecodeProjection read_decode_projection(Args& args, const char* k, int64_t K, int64_t M) {
  DecodeProjection p;
  p.count = args.i64();
  if (p.count < 1 || p.count > kMaxDecodeParts) fail(k, std::to_string(p.count) + " weight parts (1 to " + std::to_string(kMaxDecodeParts) + ")");
  for (int64_t i = 0; i < p.count; i++) {
    DecodePart& d = p.parts[i];
    if (args.flag()) {
      d.q = read_weight(args, k);
      d.N = d.q.N;
      if (d.q.K != K) fail(k, "a weight part takes K=" + std::to_string(d.q.K) + " features, x has " + std::to_string(K));
      if (M > kGemvMaxRows) fail(k, std::to_string(M) + " rows of x; a quantized weight takes 1 to " + std::to_string(kGemvMaxRows));
    } else {
      View wv = args.view();
      // rows < 0 would ask decode_f32 for a 1-d [K] view: a float weight part is [N, K]
      if (wv.ndim != 2) fail(k, "weight part " + shape_str(wv) + " must be 2-d [out, in]");
      d.N = wv.shape[0];
      d.w = decode_f32(k, "weight part", wv, d.N, K);
    }
    if (args.has_view()) d.bias = decode_f32(k, "bias part", args.view(), -1, d.N);
    p.N += d.N;
  }
  return p;
}

void decode_norm_project(const DecodeNorm& n, const DecodeProjection& p, float* y, int64_t ldy) {
  const int64_t M = n.M, K = n.K;
  if (M == 0) return;
  float* xn = const_cast<float*>(n.x);
  if (n.normalize) {
    xn = normed.get(size_t(M * K + M));  // the rows, then their rstd
    rms_norm_rows(n.x, n.weight, n.eps, n.offset, xn, xn + M * K, M, K);
  }
  int64_t col = 0;
  for (int64_t i = 0; i < p.count; i++) {
    const DecodePart& d = p.parts[i];
    // a float part accumulates onto its bias (linear()'s fused bias, beta = 1); a quantized one adds
    // it after (QuantLinear.forward): the same roundings as the separate ops
    if (d.w && d.bias)
      for (int64_t m = 0; m < M; m++) std::copy(d.bias, d.bias + d.N, y + m * ldy + col);
    if (d.w) sgemm(false, true, M, d.N, K, 1.0f, xn, K, d.w, K, d.bias ? 1.0f : 0.0f, y + col, ldy);
    else quant_gemv(d.q, xn, K, M, y + col, ldy);
    if (!d.w && d.bias)
      for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < d.N; j++) y[m * ldy + col + j] += d.bias[j];
    col += d.N;
  }
}

}  // namespace kestrel
