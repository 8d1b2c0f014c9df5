// Fused multi-tensor AdamW (PyTorch's formulas, decoupled weight decay): for every parameter of a
// group, in one call, p *= 1 - lr wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps). One call walks the group's elements as one
// index space split across the thread pool (PyTorch's _foreach / fused AdamW, llm.c's flat
// arena without moving the tensors); every element goes through the same arithmetic
// (optim_spans.inc, vectorized per ISA), so a group updated in one call is bit-identical to its
// tensors updated one call each.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernel_api.h"
#include "simd.h"

// Every multiply and add rounds on its own, as the scalar formula does: contracted into FMAs (GCC's
// default with AVX2/AVX-512 targets) the update would differ in the last bits by ISA, and a run's
// weights with it.
#pragma GCC optimize("fp-contract=off")

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

#define KESTREL_VBYTES 16
namespace optim_sse2 {
#include "simd_math.h"
#include "optim_spans.inc"
}  // namespace optim_sse2
#undef KESTREL_VBYTES

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define KESTREL_VBYTES 32
namespace optim_avx2 {
#include "simd_math.h"
#include "optim_spans.inc"
}  // namespace optim_avx2
#undef KESTREL_VBYTES
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#define KESTREL_VBYTES 64
namespace optim_avx512 {
#include "simd_math.h"
#include "optim_spans.inc"
}  // namespace optim_avx512
#undef KESTREL_VBYTES
#pragma GCC pop_options

// The bodies by simd::level(): 0 SSE2, 1 AVX2+FMA, 2 AVX-512.
decltype(&optim_sse2::adamw_span) const kAdamw[] = {optim_sse2::adamw_span, optim_avx2::adamw_span, optim_avx512::adamw_span};
decltype(&optim_sse2::chunk_squares) const kSquares[] = {optim_sse2::chunk_squares, optim_avx2::chunk_squares,
                                                         optim_avx512::chunk_squares};

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

// sum(x^2) is formed per fixed chunk and the chunks added in order, so the result does not
// depend on the thread count.
constexpr int64_t kSquaresChunk = 1 << 15;

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
  const auto squares = kSquares[simd::level()];
  const int64_t chunks = (n + kSquaresChunk - 1) / kSquaresChunk;
  std::vector<double> partial(size_t(chunks), 0.0);
  parallel_for(chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; c++) {
      const int64_t lo = c * kSquaresChunk;
      partial[size_t(c)] = squares(x + lo, std::min(kSquaresChunk, n - lo));
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
  const auto span = kAdamw[simd::level()];
  parallel_for(starts.back(), 1 << 15, [&](int64_t begin, int64_t end) {
    size_t t = size_t(std::upper_bound(starts.begin(), starts.end(), begin) - starts.begin() - 1);
    for (; t < ts.size() && starts[t] < end; t++) {
      const int64_t lo = std::max(begin, starts[t]) - starts[t], hi = std::min(end, starts[t + 1]) - starts[t];
      const AdamTensor& a = ts[t];
      if (hi > lo) span(a.p + lo, a.g + lo, a.m + lo, a.v + lo, hi - lo, h);
    }
  });
}

}  // namespace kestrel
