// Fused multi-tensor AdamW (PyTorch's formulas, decoupled weight decay): for every parameter of a
// group, in one call, p *= 1 - lr wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps). One call walks the group's elements as one
// index space split across the thread pool (PyTorch's _foreach / fused AdamW, llm.c's flat
// arena without moving the tensors); every element goes through the same adamw_span, so a group
// updated in one call is bit-identical to its tensors updated one call each.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernel_api.h"

namespace kestrel {
namespace {

struct AdamHyper {
  float b1, b2, decay, step, inv_sqrt_bc2, eps;
};

// One tensor's float32 buffers, already checked to hold n elements each.
struct AdamTensor {
  float* p;
  const float* g;
  float* m;
  float* v;
  int64_t n;
};

// noinline: both the one-tensor and the many-tensor calls run this exact machine code, so their
// results cannot differ by a vectorisation choice. __restrict and local scalars let the compiler
// vectorise (sqrt and divide are correctly rounded in SIMD as in scalar; no FMA contraction on
// the baseline x86-64 target this file is built for).
__attribute__((noinline)) void adamw_span(float* __restrict P, const float* __restrict G, float* __restrict M,
                                          float* __restrict V, int64_t n, AdamHyper h) {
  const float b1 = h.b1, b2 = h.b2, decay = h.decay, step = h.step, isb = h.inv_sqrt_bc2, eps = h.eps;
  for (int64_t i = 0; i < n; i++) {
    const float gi = G[i];
    const float mi = b1 * M[i] + (1.0f - b1) * gi;
    const float vi = b2 * V[i] + (1.0f - b2) * gi * gi;
    M[i] = mi;
    V[i] = vi;
    P[i] = P[i] * decay - step * mi / (std::sqrt(vi) * isb + eps);
  }
}

// A contiguous float32 buffer of n elements passed as (handle, element offset): the packer sends
// only these for the optimizer (9 numbers a tensor instead of four full views), so one call
// carries ~450 tensors; the bounds are checked here as Args::view checks a view's.
float* f32_span(Args& args, int64_t n, size_t tensor, const char* what, const char* kernel = "adamw") {
  const double handle = args.num();
  const int64_t offset = args.i64();
  size_t bytes = 0;
  char* data = storage_lookup(handle, &bytes);
  if (offset < 0 || n < 0 || size_t(offset + n) * sizeof(float) > bytes)
    throw KernelError(std::string(kernel) + ": tensor " + std::to_string(tensor) + "'s " + what + " of " + std::to_string(n) +
                      " float32 elements at offset " + std::to_string(offset) + " reaches past its storage of " +
                      std::to_string(bytes) + " bytes");
  return reinterpret_cast<float*>(data) + offset;
}

// sum(x^2) of one span in float64: every square of a float32 is exact in a double, and the
// partial sums are formed per fixed chunk and added in chunk order, so the result does not depend
// on the thread count. Four accumulators let the loop pipeline (the order within a chunk is fixed).
constexpr int64_t kSquaresChunk = 1 << 15;

double chunk_squares(const float* x, int64_t n) {
  double s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (int j = 0; j < 4; j++) s[j] += double(x[i + j]) * double(x[i + j]);
  for (; i < n; i++) s[0] += double(x[i]) * double(x[i]);
  return (s[0] + s[1]) + (s[2] + s[3]);
}

}  // namespace

// Arguments: numel, (handle, offset) of a contiguous float32 x, (handle, offset) of one float64
// out. out = sum(x^2), NaN or Infinity exactly when an element of x is (a float32's square cannot
// overflow a double). The gradient-norm term of clipping and of optimizer-in-backward: one read of
// the gradient, no temporary, where sum(mul(g, g)) writes a gradient-sized square first.
KESTREL_KERNEL(sum_squares) {
  const int64_t n = args.i64();
  const float* x = f32_span(args, n, 0, "x", "sum_squares");
  const double handle = args.num();
  const int64_t offset = args.i64();
  args.done();
  size_t bytes = 0;
  char* data = storage_lookup(handle, &bytes);
  if (offset < 0 || size_t(offset + 1) * sizeof(double) > bytes)
    throw KernelError("sum_squares: the float64 out at offset " + std::to_string(offset) + " reaches past its storage of " +
                      std::to_string(bytes) + " bytes");
  const int64_t chunks = (n + kSquaresChunk - 1) / kSquaresChunk;
  std::vector<double> partial(size_t(chunks), 0.0);
  parallel_for(chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; c++) {
      const int64_t lo = c * kSquaresChunk;
      partial[size_t(c)] = chunk_squares(x + lo, std::min(kSquaresChunk, n - lo));
    }
  });
  double total = 0;
  for (double p : partial) total += p;
  reinterpret_cast<double*>(data)[offset] = total;
}

// Arguments: count, lr, beta1, beta2, eps, weight_decay, bc1, bc2, then per tensor: numel and
// (handle, offset) of param, grad, exp_avg, exp_avg_sq (contiguous float32, checked by the caller
// for dtype and layout; sizes and bounds checked here before any element is touched).
KESTREL_KERNEL(adamw) {
  const int64_t count = args.i64();
  const float lr = float(args.num()), b1 = float(args.num()), b2 = float(args.num()), eps = float(args.num());
  const float wd = float(args.num()), bc1 = float(args.num()), bc2 = float(args.num());
  if (count < 0) throw KernelError("adamw: negative tensor count " + std::to_string(count));
  // grown as arguments are read (a wrong count runs out of arguments, it allocates nothing big)
  std::vector<AdamTensor> ts;
  std::vector<int64_t> starts{0};  // prefix sums of numel: the flat index space
  for (int64_t i = 0; i < count; i++) {
    const int64_t n = args.i64();
    float* p = f32_span(args, n, size_t(i), "param");
    const float* g = f32_span(args, n, size_t(i), "grad");
    float* m = f32_span(args, n, size_t(i), "exp_avg");
    float* v = f32_span(args, n, size_t(i), "exp_avg_sq");
    ts.push_back({p, g, m, v, n});
    starts.push_back(starts.back() + n);
  }
  args.done();
  const AdamHyper h{b1, b2, 1.0f - lr * wd, lr / bc1, 1.0f / std::sqrt(bc2), eps};
  // Split the concatenated elements evenly over the threads, whatever the tensor sizes: a group of
  // 272 tensors costs one dispatch, and small tensors (norm weights) share a chunk.
  parallel_for(starts.back(), 1 << 15, [&](int64_t begin, int64_t end) {
    size_t t = size_t(std::upper_bound(starts.begin(), starts.end(), begin) - starts.begin() - 1);
    for (; t < ts.size() && starts[t] < end; t++) {
      const int64_t lo = std::max(begin, starts[t]) - starts[t], hi = std::min(end, starts[t + 1]) - starts[t];
      const AdamTensor& a = ts[t];
      if (hi > lo) adamw_span(a.p + lo, a.g + lo, a.m + lo, a.v + lo, hi - lo, h);
    }
  });
}

}  // namespace kestrel
