// Kernels reduce (sum / max / min into a keepdim out) and arg_reduce (argmax / argmin, first
// index on ties, the first NaN wins as in src/backend/ref/reduce.ts). The input's dims are
// ordered by its strides and collapsed; then either
//   A. the innermost dim is reduced: each output is a run of row sums (vector accumulators,
//      ew_isa.h reduce_row), or
//   B. the innermost dim is kept (e.g. the bias gradient, sum over dim 0 of [N, D]): blocks of
//      kCols outputs accumulate whole row segments (reduce_cols), never one strided element
//      at a time.
// When there are fewer outputs than threads, the reduced range is split across threads into
// partial accumulators that are combined in a fixed order. Sums of float32 accumulate in double.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "cast.h"
#include "ew_isa.h"
#include "strided.h"

namespace kestrel {

namespace {

using ew::MAX;
using ew::MIN;
using ew::SUM;

constexpr int64_t kCols = 4096;  // outputs per column block (case B): rows are read in 16 KB runs

// The value a stored element compares as: itself, or float for float16 / bfloat16 (whose
// extremes then convert back exactly).
template <class T>
inline auto value_of(T v) {
  if constexpr (std::is_arithmetic<T>::value) return v;
  else return float(to_double(v));
}
template <class T, class A>
inline T store_as(A a) {
  if constexpr (std::is_arithmetic<T>::value) return T(a);
  else return from_double<T>(double(a));
}

// max/min runs for the dtypes without vector spans (float16, bfloat16, int8, uint8, bool).
template <class T, class A, bool Max>
void generic_row(const void* xp, int64_t n, void* accp) {
  const T* x = static_cast<const T*>(xp);
  A* acc = static_cast<A*>(accp);
  for (int64_t i = 0; i < n; i++) {
    A v = A(value_of(x[i]));
    if ((Max ? v > *acc : v < *acc) || v != v) *acc = v;
  }
}
template <class T, class A, bool Max>
void generic_cols(const void* xp, int64_t n, void* accp) {
  for (int64_t j = 0; j < n; j++) generic_row<T, A, Max>(static_cast<const T*>(xp) + j, 1, static_cast<A*>(accp) + j);
}

template <class T, class A>
struct Reducer {
  int op;
  ew::ReduceFn row, cols;

  A init() const {
    if (op == SUM) return A(0);
    if constexpr (std::numeric_limits<A>::has_infinity)
      return op == MAX ? -std::numeric_limits<A>::infinity() : std::numeric_limits<A>::infinity();
    else
      return op == MAX ? std::numeric_limits<A>::min() : std::numeric_limits<A>::max();
  }
  A combine(A acc, A x) const {
    if (op == SUM) return A(acc + x);
    bool beats = op == MAX ? x > acc : x < acc;
    return (beats || x != x) ? x : acc;
  }
  // acc op= x[i * stride] for i < n
  void run(const T* x, int64_t stride, int64_t n, A* acc) const {
    if (stride == 1) return row(x, n, acc);
    A a = *acc;
    for (int64_t i = 0; i < n; i++) a = combine(a, A(value_of(x[i * stride])));
    *acc = a;
  }
  // acc[j] op= x[j * stride] for j < n
  void run_cols(const T* x, int64_t stride, int64_t n, A* acc) const {
    if (stride == 1) return cols(x, n, acc);
    for (int64_t j = 0; j < n; j++) acc[j] = combine(acc[j], A(value_of(x[j * stride])));
  }
};

struct Dim {
  int64_t n, sx, so;
  bool red;
};

template <class T, class A>
void reduce_typed(const Reducer<T, A>& R, const View& x, const View& out) {
  // Dims of x (size 1 dropped), ordered by x's strides (innermost smallest), then collapsed.
  int64_t ostr[kMaxDims], acc_s = 1;
  for (int d = x.ndim - 1; d >= 0; d--) { ostr[d] = acc_s; acc_s *= out.shape[d]; }
  Dim dims[kMaxDims];
  int nd = 0;
  for (int d = 0; d < x.ndim; d++)
    if (x.shape[d] != 1) dims[nd++] = {x.shape[d], x.stride[d], out.shape[d] == 1 ? 0 : ostr[d], out.shape[d] == 1};
  small_stable_sort(dims, nd, [](const Dim& a, const Dim& b) { return a.sx > b.sx; });
  int m = 0;
  for (int i = 0; i < nd; i++) {
    Dim& p = dims[m > 0 ? m - 1 : 0];
    if (m > 0 && p.red == dims[i].red && p.sx == dims[i].sx * dims[i].n && p.so == dims[i].so * dims[i].n) {
      p.n *= dims[i].n;
      p.sx = dims[i].sx;
      p.so = dims[i].so;
    } else {
      dims[m++] = dims[i];
    }
  }
  nd = m;
  const bool inner_kept = nd > 0 && !dims[nd - 1].red;
  // K: kept dims (x and out strides), without the inner one in case B; RD: reduced dims.
  Strided<2> K;
  Strided<1> RD;
  int64_t J = 1, sxj = 0, soj = 0;
  for (int i = 0; i < nd - (inner_kept ? 1 : 0); i++) {
    if (dims[i].red) {
      RD.shape[RD.ndim] = dims[i].n;
      RD.stride[0][RD.ndim++] = dims[i].sx;
      RD.numel *= dims[i].n;
    } else {
      K.shape[K.ndim] = dims[i].n;
      K.stride[0][K.ndim] = dims[i].sx;
      K.stride[1][K.ndim++] = dims[i].so;
      K.numel *= dims[i].n;
    }
  }
  if (inner_kept) { J = dims[nd - 1].n; sxj = dims[nd - 1].sx; soj = dims[nd - 1].so; }
  const T* xp = x.ptr<T>();
  T* op = out.ptr<T>();
  const int64_t nR = RD.numel, groups = K.numel * ((J + kCols - 1) / kCols);
  const int threads = num_threads();
  int64_t splits = 1;
  if (groups < 2 * threads && nR * std::min(J, kCols) >= 2 * kGrain)
    splits = std::min<int64_t>(nR, 2 * threads);
  // Reduced positions [r0, r1) into acc (case A: one output; case B: kCols outputs from column j0).
  auto accumulate = [&](int64_t xoff, int64_t j0, int64_t nj, int64_t r0, int64_t r1, A* acc) {
    walk(RD, r0, r1, [&](const int64_t* off, int64_t n) {
      const T* p = xp + xoff + off[0];
      const int64_t sr = RD.inner_stride(0);
      if (!inner_kept) return R.run(p, sr, n, acc);
      for (int64_t t = 0; t < n; t++) R.run_cols(p + t * sr + j0 * sxj, sxj, nj, acc);
    });
  };
  std::vector<A> partial(splits > 1 ? size_t(K.numel * J * splits) : 0);
  // One task: group g (an output, or a column block of one kept position) over split s.
  auto task = [&](int64_t g, int64_t s) {
    const int64_t nb = (J + kCols - 1) / kCols, q = g / nb, j0 = (g % nb) * kCols, nj = std::min(kCols, J - j0);
    int64_t xoff = 0, ooff = 0;
    int64_t rem = q;
    for (int d = K.ndim - 1; d >= 0; d--) {
      int64_t id = rem % K.shape[d];
      rem /= K.shape[d];
      xoff += id * K.stride[0][d];
      ooff += id * K.stride[1][d];
    }
    A acc[kCols];
    for (int64_t j = 0; j < nj; j++) acc[j] = R.init();
    accumulate(xoff, j0, nj, nR * s / splits, nR * (s + 1) / splits, acc);
    if (splits > 1) {
      for (int64_t j = 0; j < nj; j++) partial[size_t((s * K.numel + q) * J + j0 + j)] = acc[j];
    } else {
      for (int64_t j = 0; j < nj; j++) op[ooff + (j0 + j) * soj] = store_as<T>(acc[j]);
    }
  };
  if (splits == 1 && !inner_kept) {
    // Many outputs, each a reduction over RD: walk the kept positions with a counter.
    parallel_run(K.numel, std::max<int64_t>(1, kGrain / std::max<int64_t>(nR, 1)), [&](int64_t begin, int64_t end) {
      walk(K, begin, end, [&](const int64_t* off, int64_t n) {
        for (int64_t t = 0; t < n; t++) {
          A acc = R.init();
          accumulate(off[0] + t * K.inner_stride(0), 0, 1, 0, nR, &acc);
          op[off[1] + t * K.inner_stride(1)] = store_as<T>(acc);
        }
      });
    });
    return;
  }
  const int64_t per_task = std::max<int64_t>(1, nR / splits * std::min(J, kCols));
  parallel_run(groups * splits, std::max<int64_t>(1, kGrain / per_task), [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++) task(t / splits, t % splits);
  });
  if (splits == 1) return;
  // Combine the partials in split order (deterministic for a given thread count).
  parallel_run(K.numel * J, kGrain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      A acc = partial[size_t(i)];
      for (int64_t s = 1; s < splits; s++) acc = R.combine(acc, partial[size_t(s * K.numel * J + i)]);
      int64_t q = i / J, j = i % J, ooff = 0, rem = q;
      for (int d = K.ndim - 1; d >= 0; d--) {
        ooff += (rem % K.shape[d]) * K.stride[1][d];
        rem /= K.shape[d];
      }
      op[ooff + j * soj] = store_as<T>(acc);
    }
  });
}

}  // namespace

// out = op over the dims where out has size 1 (keepdim form, contiguous, x's dtype).
KESTREL_KERNEL(reduce) {
  int64_t op = args.i64();
  View x = args.view(), out = args.view();
  args.done();
  if (op < 0 || op >= ew::kNumReduce) throw KernelError("reduce: unknown op code " + std::to_string(op));
  const char* name = op == SUM ? "sum" : op == MAX ? "max" : "min";
  if (out.dtype != x.dtype)
    throw KernelError(std::string("reduce: out dtype ") + dtype_name(out.dtype) + " differs from x dtype " + dtype_name(x.dtype));
  if (out.ndim != x.ndim) throw KernelError("reduce: out " + shape_str(out) + " must have the rank of x " + shape_str(x));
  for (int d = 0; d < x.ndim; d++)
    if (out.shape[d] != 1 && out.shape[d] != x.shape[d])
      throw KernelError("reduce: out " + shape_str(out) + " is not a keepdim reduction of x " + shape_str(x));
  require_contiguous("reduce", out, "out");
  int slot = ew::slot_of(x.dtype);
  const bool generic = slot < 0 && op != SUM &&
                       (x.dtype == F16 || x.dtype == BF16 || x.dtype == I8 || x.dtype == U8 || x.dtype == BOOL);
  ew::ReduceFn row = slot >= 0 ? ew::isa().reduce_row[slot][op] : nullptr;
  if (!row && !generic) throw KernelError(std::string("reduce: ") + name + " does not support dtype " + dtype_name(x.dtype));
  if (out.numel() == 0) return;
  if (x.numel() == 0 && op != SUM)
    throw KernelError(std::string("reduce: ") + name + " of an empty dim of " + shape_str(x));
  const int o = int(op);
  if (generic) {  // max / min of the 16-bit floats (compared as float) and the byte types
    auto run = [&](auto t, auto a) {
      using T = decltype(t);
      using A = decltype(a);
      Reducer<T, A> R = op == MAX ? Reducer<T, A>{o, generic_row<T, A, true>, generic_cols<T, A, true>}
                                  : Reducer<T, A>{o, generic_row<T, A, false>, generic_cols<T, A, false>};
      reduce_typed(R, x, out);
    };
    if (x.dtype == F16) run(f16_t{}, 0.0f);
    else if (x.dtype == BF16) run(bf16_t{}, 0.0f);
    else if (x.dtype == I8) run(int8_t{}, int8_t{});
    else run(uint8_t{}, uint8_t{});  // uint8, and bool as its bytes
    return;
  }
  ew::ReduceFn cols = ew::isa().reduce_cols[slot][op];
  switch (x.dtype) {
    case F32:
      if (op == SUM) reduce_typed<float, double>({o, row, cols}, x, out);
      else reduce_typed<float, float>({o, row, cols}, x, out);
      break;
    case F64: reduce_typed<double, double>({o, row, cols}, x, out); break;
    case I32: reduce_typed<int32_t, int32_t>({o, row, cols}, x, out); break;
    case I64:
      if (op == SUM) reduce_typed<int64_t, uint64_t>({o, row, cols}, x, out);
      else reduce_typed<int64_t, int64_t>({o, row, cols}, x, out);
      break;
  }
}

namespace {

constexpr int64_t kScanBlock = 64;  // values per block of the argmax's index scan

// argmax/argmin of T along one dim: index of the first extreme, or of the first NaN.
template <class T, bool Max>
void arg_typed(const View& x, int dim, const View& out) {
  const int slot = ew::slot_of(x.dtype);
  const ew::ReduceFn row = slot >= 0 ? ew::isa().reduce_row[slot][Max ? MAX : MIN] : nullptr;
  using V = decltype(value_of(T{}));
  View xk = x, ok = out;  // x and out without `dim`
  xk.ndim = ok.ndim = 0;
  for (int d = 0; d < x.ndim; d++) {
    if (d == dim) continue;
    xk.shape[xk.ndim] = x.shape[d];
    xk.stride[xk.ndim++] = x.stride[d];
    ok.shape[ok.ndim] = out.shape[d];
    ok.stride[ok.ndim++] = out.stride[d];
  }
  const View* kv[2] = {&xk, &ok};
  Strided<2> K = make_strided(kv, 0);
  const int64_t size = x.shape[dim], sd = x.stride[dim];
  const T* xp = x.ptr<T>();
  int64_t* op = out.ptr<int64_t>();
  auto better = [](V v, V best) { return (Max ? v > best : v < best) || (v != v && best == best); };
  // Scan along dim per output when dim is the most contiguous; else blocks of outputs per step.
  const bool rows = K.ndim == 0 || sd <= K.inner_stride(0);
  parallel_run(K.numel, std::max<int64_t>(1, kGrain / std::max<int64_t>(size, 1)), [&](int64_t begin, int64_t end) {
    walk(K, begin, end, [&](const int64_t* off, int64_t n) {
      const int64_t sx = K.inner_stride(0), so = K.inner_stride(1);
      if (rows && sd == 1 && row) {
        // Two passes over a contiguous row: the extreme by the vectorized reduction, then the
        // first index holding it (or the first NaN), with no data-dependent branch per element.
        if constexpr (std::is_arithmetic<T>::value) {  // row is set for the vector dtypes only
          for (int64_t t = 0; t < n; t++) {
            const T* p = xp + off[0] + t * sx;
            T m = p[0];
            row(p, size, &m);
            int64_t k = 0;
            if (m != m) {
              while (p[k] == p[k]) k++;
            } else {  // blocks tested without a branch per element (they vectorize), then the block's own scan
              for (; k + kScanBlock <= size; k += kScanBlock) {
                int hit = 0;  // an int, not a bool: GCC vectorizes this OR only so
                for (int64_t j = 0; j < kScanBlock; j++) hit |= int(p[k + j] == m);
                if (hit) break;
              }
              while (p[k] != m) k++;
            }
            op[off[1] + t * so] = k;
          }
          return;
        }
      }
      if (rows) {
        for (int64_t t = 0; t < n; t++) {
          const T* p = xp + off[0] + t * sx;
          V best = value_of(p[0]);
          int64_t arg = 0;
          for (int64_t k = 1; k < size; k++)
            if (better(value_of(p[k * sd]), best)) { best = value_of(p[k * sd]); arg = k; }
          op[off[1] + t * so] = arg;
        }
        return;
      }
      V best[kCols];
      int64_t arg[kCols];
      for (int64_t j0 = 0; j0 < n; j0 += kCols) {
        const int64_t nj = std::min(kCols, n - j0);
        const T* p = xp + off[0] + j0 * sx;
        for (int64_t j = 0; j < nj; j++) { best[j] = value_of(p[j * sx]); arg[j] = 0; }
        for (int64_t k = 1; k < size; k++)
          for (int64_t j = 0; j < nj; j++) {
            V v = value_of(p[k * sd + j * sx]);
            if (better(v, best[j])) { best[j] = v; arg[j] = k; }
          }
        for (int64_t j = 0; j < nj; j++) op[off[1] + (j0 + j) * so] = arg[j];
      }
    });
  });
}

}  // namespace

// out (int64, x's shape with size 1 at dim, contiguous) = index of the max/min along dim.
KESTREL_KERNEL(arg_reduce) {
  int64_t op = args.i64();
  View x = args.view();
  int64_t dim = args.i64();
  View out = args.view();
  args.done();
  if (op != 0 && op != 1) throw KernelError("arg_reduce: unknown op code " + std::to_string(op));
  const char* name = op == 0 ? "argmax" : "argmin";
  if (dim < 0 || dim >= x.ndim)
    throw KernelError(std::string("arg_reduce: ") + name + " dim " + std::to_string(dim) + " out of range for x " + shape_str(x));
  require_dtype("arg_reduce", out, "out", out.dtype == I64, "int64");
  require_contiguous("arg_reduce", out, "out");
  bool ok = out.ndim == x.ndim;
  for (int d = 0; ok && d < x.ndim; d++) ok = out.shape[d] == (d == dim ? 1 : x.shape[d]);
  if (!ok) throw KernelError(std::string("arg_reduce: ") + name + " out " + shape_str(out) + " does not match x " + shape_str(x) +
                             " with dim " + std::to_string(dim) + " reduced");
  if (out.numel() == 0) return;
  if (x.shape[dim] == 0) throw KernelError(std::string("arg_reduce: ") + name + " over an empty dim of " + shape_str(x));
  const int d = int(dim);
  switch (x.dtype) {
    case F32: op == 0 ? arg_typed<float, true>(x, d, out) : arg_typed<float, false>(x, d, out); break;
    case F64: op == 0 ? arg_typed<double, true>(x, d, out) : arg_typed<double, false>(x, d, out); break;
    case I32: op == 0 ? arg_typed<int32_t, true>(x, d, out) : arg_typed<int32_t, false>(x, d, out); break;
    case I64: op == 0 ? arg_typed<int64_t, true>(x, d, out) : arg_typed<int64_t, false>(x, d, out); break;
    case F16: op == 0 ? arg_typed<f16_t, true>(x, d, out) : arg_typed<f16_t, false>(x, d, out); break;
    case BF16: op == 0 ? arg_typed<bf16_t, true>(x, d, out) : arg_typed<bf16_t, false>(x, d, out); break;
    case I8: op == 0 ? arg_typed<int8_t, true>(x, d, out) : arg_typed<int8_t, false>(x, d, out); break;
    case U8: case BOOL: op == 0 ? arg_typed<uint8_t, true>(x, d, out) : arg_typed<uint8_t, false>(x, d, out); break;
    default:
      throw KernelError(std::string("arg_reduce: ") + name + " does not support dtype " + dtype_name(x.dtype));
  }
}

}  // namespace kestrel
