// The weighted scatter that ends a mixture-of-experts layer (MegaBlocks' scatter of the expert
// outputs with their routing weights) and its backward, each one pass over the routed rows:
//   forward   out[t] = sum over slots s with token[s] = t of w[s] y[s]     out [N, D], y [S, D], w [S]
//   backward  dy[s] = w[s] g[token[s]],   dw[s] = sum_d g[token[s], d] y[s, d]
// It equals index_add(zeros, 0, token, y * w[:, None]) (src/ops/fused/moe_combine.ts). Forward
// lists each token's slots (a counting sort) and splits the tokens over threads, so slots that
// share a token never race and each out row adds its slots in slot order (index_add's order);
// backward splits the slots. float32 / float64.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "strided.h"

namespace kestrel {
namespace {

constexpr int64_t kRowGrain = 16384;  // elements of out (or of y) per thread task

void check_common(const char* k, const View& token, const View& y, const View& w, int64_t n) {
  require_dtype(k, token, "token", token.dtype == I64, "int64");
  require_dtype(k, y, "y", y.dtype == F32 || y.dtype == F64, "float32 or float64");
  require_dtype(k, w, "w", w.dtype == y.dtype, dtype_name(y.dtype));
  if (y.ndim != 2 || token.ndim != 1 || w.ndim != 1 || token.size(0) != y.size(0) || w.size(0) != y.size(0))
    throw KernelError(std::string(k) + ": need y [S, D], token [S], w [S]; got " + shape_str(y) + ", " + shape_str(token) + ", " +
                      shape_str(w));
  for (const auto& [v, name] : {std::pair{&token, "token"}, {&y, "y"}, {&w, "w"}}) require_contiguous(k, *v, name);
  const int64_t* t = token.ptr<int64_t>();
  for (int64_t s = 0; s < token.size(0); s++)
    if (t[s] < 0 || t[s] >= n)
      throw KernelError(std::string(k) + ": token " + std::to_string(t[s]) + " at slot " + std::to_string(s) +
                        " is out of range for " + std::to_string(n) + " rows");
}

template <class T>
void combine(const View& out, const View& token, const View& y, const View& w) {
  const int64_t S = y.size(0), D = y.size(1), N = out.size(0);
  T* o = out.ptr<T>();
  const T *yv = y.ptr<T>(), *wv = w.ptr<T>();
  const int64_t* t = token.ptr<int64_t>();
  // each token's slots, in slot order (a counting sort): rows of out are then independent tasks
  std::vector<int64_t> start(size_t(N) + 1, 0), order(static_cast<size_t>(S));
  for (int64_t s = 0; s < S; s++) start[size_t(t[s]) + 1]++;
  for (int64_t r = 0; r < N; r++) start[size_t(r) + 1] += start[size_t(r)];
  std::vector<int64_t> cursor(start.begin(), start.end() - 1);
  for (int64_t s = 0; s < S; s++) order[size_t(cursor[size_t(t[s])]++)] = s;
  parallel_run(N, std::max<int64_t>(1, kRowGrain / std::max<int64_t>(D, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      T* orow = o + r * D;
      std::fill(orow, orow + D, T(0));
      for (int64_t i = start[size_t(r)]; i < start[size_t(r) + 1]; i++) {
        int64_t s = order[size_t(i)];
        T ws = wv[s];
        const T* yrow = yv + s * D;
        for (int64_t d = 0; d < D; d++) orow[d] += ws * yrow[d];
      }
    }
  });
}

template <class T>
void combine_backward(const View& g, const View& token, const View& y, const View& w, const View* dy, const View* dw) {
  const int64_t S = y.size(0), D = y.size(1);
  const T *gv = g.ptr<T>(), *yv = y.ptr<T>(), *wv = w.ptr<T>();
  const int64_t* t = token.ptr<int64_t>();
  T* dyv = dy ? dy->ptr<T>() : nullptr;
  T* dwv = dw ? dw->ptr<T>() : nullptr;
  parallel_run(S, std::max<int64_t>(1, kRowGrain / std::max<int64_t>(D, 1)), [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; s++) {
      const T* grow = gv + t[s] * D;
      if (dyv) {
        T ws = wv[s];
        for (int64_t d = 0; d < D; d++) dyv[s * D + d] = ws * grow[d];
      }
      if (dwv) {
        const T* yrow = yv + s * D;
        T acc = 0;
        for (int64_t d = 0; d < D; d++) acc += grow[d] * yrow[d];
        dwv[s] = acc;
      }
    }
  });
}

}  // namespace

// args: out [N, D] (written whole), token [S] int64, y [S, D], w [S]; out = index_add(0, token, y * w)
KESTREL_KERNEL(moe_combine) {
  const char* k = "moe_combine";
  View out = args.view(), token = args.view(), y = args.view(), w = args.view();
  args.done();
  require_dtype(k, out, "out", out.dtype == y.dtype, dtype_name(y.dtype));
  if (out.ndim != 2 || (out.size(1) != (y.ndim == 2 ? y.size(1) : -1)))
    throw KernelError(std::string(k) + ": out must be [N, D] with y's D; got out " + shape_str(out) + ", y " + shape_str(y));
  require_contiguous(k, out, "out");
  check_common(k, token, y, w, out.size(0));
  if (y.dtype == F32) combine<float>(out, token, y, w);
  else combine<double>(out, token, y, w);
}

// args: g [N, D], token [S], y [S, D], w [S], then dy [S, D] and dw [S] (each may be a null view)
KESTREL_KERNEL(moe_combine_backward) {
  const char* k = "moe_combine_backward";
  View g = args.view(), token = args.view(), y = args.view(), w = args.view();
  View dy, dw;
  auto optional = [&](View* v) {  // a gradient nobody needs comes as a null view
    bool has = args.has_view();
    if (has) *v = args.view();
    return has;
  };
  bool has_dy = optional(&dy), has_dw = optional(&dw);
  args.done();
  require_dtype(k, g, "g", g.dtype == y.dtype, dtype_name(y.dtype));
  if (g.ndim != 2 || y.ndim != 2 || g.size(1) != y.size(1))
    throw KernelError(std::string(k) + ": g must be [N, D] with y's D; got g " + shape_str(g) + ", y " + shape_str(y));
  require_contiguous(k, g, "g");
  check_common(k, token, y, w, g.size(0));
  if (has_dy) {
    require_dtype(k, dy, "dy", dy.dtype == y.dtype, dtype_name(y.dtype));
    require_same_shape(k, y, "y", dy, "dy");
    require_contiguous(k, dy, "dy");
  }
  if (has_dw) {
    require_dtype(k, dw, "dw", dw.dtype == y.dtype, dtype_name(y.dtype));
    require_same_shape(k, w, "w", dw, "dw");
    require_contiguous(k, dw, "dw");
  }
  const View* dyp = has_dy ? &dy : nullptr;
  const View* dwp = has_dw ? &dw : nullptr;
  if (y.dtype == F32) combine_backward<float>(g, token, y, w, dyp, dwp);
  else combine_backward<double>(g, token, y, w, dyp, dwp);
}

}  // namespace kestrel
