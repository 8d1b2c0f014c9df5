// The decode step's attention input in one call (src/ops/fused/rms_norm_qkv_rope.ts has the maths):
//   xn = x rstd (offset + g),  rstd = 1 / sqrt(mean(x^2) + eps)          (RMSNorm, per row)
//   y  = xn [Wq | Wk | Wv]ᵀ + [bq | bk | bv]                             (one GEMV over the merged rows)
//   q, k = rope(y[:, q cols], cos, sin), rope(y[:, k cols], cos, sin)    (in place, per head)
// for M <= 8 rows of x (batch-1 or small-batch decoding), each row with its own position's cos/sin.
// The weight comes in parts: one merged quantized weight (int8, q4, bf16: read once by quant_gemv,
// activations quantized once) or float32 weights (Wq, Wk, Wv kept apart, each through sgemm's
// small-M path). Normalizing and rotating a few rows is tiny next to the weight stream; what the
// fusion saves is the ten-odd op calls (and their tensors) a layer's composite makes per token.
#include <cmath>
#include <string>

#include "gemm.h"
#include "kernel_api.h"
#include "quant_weight.h"

namespace kestrel {
namespace {

[[noreturn]] void fail(const char* k, const std::string& why) { throw KernelError(std::string(k) + ": " + why); }

// A contiguous float32 view with exactly the given 2-d shape (rows x cols), or a 1-d one of cols when rows < 0.
const float* need_f32(const char* k, const char* what, const View& v, int64_t rows, int64_t cols) {
  bool shape_ok = rows < 0 ? v.ndim == 1 && v.shape[0] == cols : v.ndim == 2 && v.shape[0] == rows && v.shape[1] == cols;
  std::string want = rows < 0 ? "[" + std::to_string(cols) + "]" : "[" + std::to_string(rows) + ", " + std::to_string(cols) + "]";
  if (v.dtype != F32) fail(k, std::string(what) + " must be float32, got " + dtype_name(v.dtype) + " " + shape_str(v));
  if (!shape_ok) fail(k, std::string(what) + " " + shape_str(v) + " must be " + want);
  if (!v.contiguous()) fail(k, std::string(what) + " " + shape_str(v) + " must be contiguous");
  return v.ptr<float>();
}

// One block of output columns: a quantized weight, or a float32 one [N, K] (w == nullptr then).
struct Part {
  QuantWeight q;
  const float* w = nullptr;
  int64_t N = 0;
  const float* bias = nullptr;
};

thread_local ScratchBuffer normed{"rms_norm_qkv_rope normalized rows"};

// Rotates the n_heads heads of hd values at r by the angle tables c/s (hd/2 each).
void rope_heads(float* r, int64_t n_heads, int64_t hd, const float* c, const float* s, bool interleaved) {
  const int64_t half = hd / 2;
  for (int64_t h = 0; h < n_heads; h++, r += hd)
    for (int64_t i = 0; i < half; i++) {
      float* a = interleaved ? r + 2 * i : r + i;
      float* b = interleaved ? r + 2 * i + 1 : r + half + i;
      const float x1 = *a, x2 = *b;
      *a = x1 * c[i] - x2 * s[i];
      *b = x2 * c[i] + x1 * s[i];
    }
}

}  // namespace

KESTREL_KERNEL(rms_norm_qkv_rope) {
  const char* k = "rms_norm_qkv_rope";
  View xv = args.view();
  if (xv.ndim != 2) fail(k, "x " + shape_str(xv) + " must be 2-d [rows, hidden]");
  const int64_t M = xv.shape[0], D = xv.shape[1];
  const float* x = need_f32(k, "x", xv, M, D);
  const float* g = args.has_view() ? need_f32(k, "norm weight", args.view(), -1, D) : nullptr;
  const float eps = float(args.num()), offset = float(args.num());
  const int64_t nparts = args.i64();
  if (nparts < 1 || nparts > 3) fail(k, std::to_string(nparts) + " weight parts (1 merged or 3: q, k, v)");
  Part all[3];  // no allocation per token
  int64_t N = 0;
  for (int64_t i = 0; i < nparts; i++) {
    Part& p = all[i];
    if (args.flag()) {
      p.q = read_weight(args, k);
      p.N = p.q.N;
      if (p.q.K != D) fail(k, "a weight part takes K=" + std::to_string(p.q.K) + " features, x has " + std::to_string(D));
    } else {
      View wv = args.view();
      p.N = wv.ndim == 2 ? wv.shape[0] : -1;
      p.w = need_f32(k, "weight part", wv, p.N, D);
    }
    if (args.has_view()) p.bias = need_f32(k, "bias part", args.view(), -1, p.N);
    N += p.N;
  }
  View cv = args.view(), sv = args.view();
  const int64_t H = args.i64(), Hkv = args.i64(), hd = args.i64();
  const bool interleaved = args.flag();
  View out = args.view();
  args.done();
  if (H < 1 || Hkv < 1 || hd < 2 || hd % 2 != 0 || H % Hkv != 0)
    fail(k, "heads H=" + std::to_string(H) + " Hkv=" + std::to_string(Hkv) + " hd=" + std::to_string(hd) + " (need hd even, H a multiple of Hkv)");
  if (N != (H + 2 * Hkv) * hd)
    fail(k, "the weight parts give " + std::to_string(N) + " outputs; (H + 2 Hkv) hd = " + std::to_string((H + 2 * Hkv) * hd));
  const float* cs = need_f32(k, "cos", cv, M, hd / 2);
  const float* sn = need_f32(k, "sin", sv, M, hd / 2);
  float* y = const_cast<float*>(need_f32(k, "out", out, M, N));
  if (M == 0) return;
  for (int64_t i = 0; i < nparts; i++)
    if (!all[i].w && M > kGemvMaxRows) fail(k, std::to_string(M) + " rows of x; a quantized weight takes 1 to " + std::to_string(kGemvMaxRows));

  float* xn = normed.get(size_t(M * D));
  for (int64_t m = 0; m < M; m++) {
    const float* xr = x + m * D;
    double ss = 0;
    for (int64_t j = 0; j < D; j++) ss += double(xr[j]) * xr[j];
    const float rstd = 1.0f / std::sqrt(float(ss / double(D)) + eps);
    for (int64_t j = 0; j < D; j++) xn[m * D + j] = xr[j] * rstd * (g ? offset + g[j] : 1.0f);
  }
  int64_t col = 0;
  for (int64_t i = 0; i < nparts; i++) {
    const Part& p = all[i];
    if (p.w) sgemm(false, true, M, p.N, D, 1.0f, xn, D, p.w, D, 0.0f, y + col, N);
    else quant_gemv(p.q, xn, D, M, y + col, N);
    if (p.bias)
      for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < p.N; n++) y[m * N + col + n] += p.bias[n];
    col += p.N;
  }
  for (int64_t m = 0; m < M; m++) {
    const float* c = cs + m * (hd / 2);
    const float* s = sn + m * (hd / 2);
    rope_heads(y + m * N, H, hd, c, s, interleaved);             // q
    rope_heads(y + m * N + H * hd, Hkv, hd, c, s, interleaved);  // k (v is not rotated)
  }
}

}  // namespace kestrel
