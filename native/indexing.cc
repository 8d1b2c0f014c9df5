// Kernels gather / scatter_add (torch.gather, scatter_add_) and index_select / index_add
// (torch.index_select, index_add_), as src/backend/ref/linalg.ts defines them. Every index is
// checked (0 <= i < size; as in PyTorch a negative one is an error, never wrapped) before
// anything is written. The adds never race: work is split over positions that map to distinct
// out elements, and each out element takes its contributions in index order (the reference's
// order), so results do not depend on threads.
#include <algorithm>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include "cast.h"
#include "strided.h"

namespace kestrel {

namespace {

void check_index_dtype(const char* what, const View& index) {
  require_dtype(what, index, "index", index.dtype == I64 || index.dtype == I32, "int64 or int32");
}

inline int64_t index_at(const View& idx, int64_t off) {
  return idx.dtype == I64 ? idx.ptr<int64_t>()[off] : int64_t(idx.ptr<int32_t>()[off]);
}

// Throws unless every index lies in [0, size); names the first offender and its position.
void check_indices(const char* what, const View& index, int64_t size) {
  const View* vs[1] = {&index};
  Strided<1> s = make_strided(vs);
  int64_t pos = 0;
  walk(s, 0, s.numel, [&](const int64_t* off, int64_t n) {
    for (int64_t t = 0; t < n; t++, pos++) {
      int64_t v = index_at(index, off[0] + t * s.inner_stride(0));
      if (v < 0 || v >= size)
        throw KernelError(std::string(what) + ": index " + std::to_string(v) + " at position " + std::to_string(pos) +
                          " of index " + shape_str(index) + " is out of range for a dimension of size " + std::to_string(size));
    }
  });
}

// v with dim removed (its offset kept), for iterating the other dims.
View drop_dim(const View& v, int dim) {
  View r = v;
  r.ndim = 0;
  for (int d = 0; d < v.ndim; d++) {
    if (d == dim) continue;
    r.shape[r.ndim] = v.shape[d];
    r.stride[r.ndim++] = v.stride[d];
  }
  return r;
}

// v with shape `like` on every dim but dim (for views larger than the index, as torch allows).
View with_shape(const View& v, const View& like, int dim) {
  View r = v;
  for (int d = 0; d < v.ndim; d++)
    if (d != dim) r.shape[d] = like.shape[d];
  return r;
}

void check_dim(const char* what, int64_t dim, const View& v) {
  if (dim < 0 || dim >= std::max(v.ndim, 1))
    throw KernelError(std::string(what) + ": dim " + std::to_string(dim) + " out of range for " + shape_str(v));
}

// An in-place out must not have two positions on one element (a stride-0 dim of size > 1).
void check_no_overlap(const char* what, const View& out) {
  for (int d = 0; d < out.ndim; d++)
    if (out.shape[d] > 1 && out.stride[d] == 0)
      throw KernelError(std::string(what) + ": out " + shape_str(out) + " has overlapping elements (stride 0 on dim " +
                        std::to_string(d) + ")");
}

template <class F>
void with_elem(size_t es, F&& f) {
  switch (es) {
    case 8: f(uint64_t{}); break;
    case 4: f(uint32_t{}); break;
    case 2: f(uint16_t{}); break;
    default: f(uint8_t{}); break;
  }
}

// o += v: float types add, integers wrap, a 16-bit float source adds into a float32 scratch.
template <class T, class S>
inline void acc_add(T& o, S v) {
  if constexpr (std::is_integral<T>::value) {
    using U = typename std::make_unsigned<T>::type;
    o = T(U(o) + U(v));
  } else if constexpr (std::is_same<T, S>::value) {
    o += v;
  } else {
    o += float(to_double(v));
  }
}

// Runs run(T{}, S{}, target) for the adds' dtypes: float32/float64 and the integers in place;
// float16/bfloat16 accumulate into a float32 copy of out that is rounded back once at the end
// (the reference sums in float64 and rounds once too). bool is rejected.
template <class Run>
void with_add_types(const char* what, const View& out, Run run) {
  switch (out.dtype) {
    case F32: return run(float{}, float{}, out);
    case F64: return run(double{}, double{}, out);
    case I32: return run(int32_t{}, int32_t{}, out);
    case I64: return run(int64_t{}, int64_t{}, out);
    case I8: return run(int8_t{}, int8_t{}, out);
    case U8: return run(uint8_t{}, uint8_t{}, out);
    case F16: case BF16: break;
    default: throw KernelError(std::string(what) + ": out has dtype " + dtype_name(out.dtype) + " (expected a float or integer dtype)");
  }
  std::vector<float> buf(size_t(out.numel()));
  View scratch = out;
  scratch.data = reinterpret_cast<char*>(buf.data());
  scratch.dtype = F32;
  scratch.offset = 0;
  for (int64_t d = out.ndim - 1, st = 1; d >= 0; d--) { scratch.stride[d] = st; st *= out.shape[d]; }
  const View* vs[2] = {&scratch, &out};
  Strided<2> s = make_strided(vs);
  auto each = [&](auto h, bool back) {
    using H = decltype(h);
    H* hp = reinterpret_cast<H*>(out.data) + out.offset;
    parallel_run(s.numel, kGrain, [&](int64_t begin, int64_t end) {
      walk(s, begin, end, [&](const int64_t* off, int64_t n) {
        for (int64_t t = 0; t < n; t++) {
          float& f = buf[size_t(off[0] + t * s.inner_stride(0))];
          H& v = hp[off[1] + t * s.inner_stride(1)];
          if (back) v = from_double<H>(f);
          else f = float(to_double(v));
        }
      });
    });
  };
  if (out.dtype == F16) {
    each(f16_t{}, false);
    run(float{}, f16_t{}, scratch);
    each(f16_t{}, true);
  } else {
    each(bf16_t{}, false);
    run(float{}, bf16_t{}, scratch);
    each(bf16_t{}, true);
  }
}

}  // namespace

// out[p] = x[p with p[dim] = index[p]]; index and out one shape, index.shape[d] <= x.shape[d]
// off dim; out contiguous, x's dtype (any: moved by element size).
KESTREL_KERNEL(gather) {
  View x = args.view();
  int64_t dim = args.i64();
  View index = args.view(), out = args.view();
  args.done();
  check_index_dtype("gather", index);
  check_dim("gather", dim, x);
  if (index.ndim != x.ndim || !same_shape(index, out))
    throw KernelError("gather: index " + shape_str(index) + ", out " + shape_str(out) + " and x " + shape_str(x) +
                      " must have one rank, and out the index's shape");
  for (int d = 0; d < x.ndim; d++)
    if (d != dim && index.shape[d] > x.shape[d])
      throw KernelError("gather: index " + shape_str(index) + " does not fit x " + shape_str(x) + " along dim " + std::to_string(d));
  if (out.dtype != x.dtype) throw KernelError(std::string("gather: out dtype ") + dtype_name(out.dtype) + " differs from x " + dtype_name(x.dtype));
  require_contiguous("gather", out, "out");
  if (out.numel() == 0) return;
  const int64_t size = x.ndim ? x.shape[dim] : 1, sd = x.ndim ? x.stride[dim] : 0;
  check_indices("gather", index, size);
  View xg = with_shape(x, index, int(dim));
  if (x.ndim) xg.stride[dim] = 0;
  const View* vs[3] = {&out, &index, &xg};
  Strided<3> s = make_strided(vs);
  with_elem(dtype_size(x.dtype), [&](auto e) {
    using E = decltype(e);
    const E* xp = reinterpret_cast<const E*>(x.data) + x.offset;
    E* op = reinterpret_cast<E*>(out.data) + out.offset;
    parallel_run(s.numel, kGrain, [&](int64_t begin, int64_t end) {
      walk(s, begin, end, [&](const int64_t* off, int64_t n) {
        for (int64_t t = 0; t < n; t++) {
          int64_t i = index_at(index, off[1] + t * s.inner_stride(1));
          op[off[0] + t] = xp[off[2] + t * s.inner_stride(2) + i * sd];
        }
      });
    });
  });
}

namespace {
template <class T, class S>
void scatter_add_typed(const View& out, int dim, const View& index, const View& src) {
  const int64_t od = out.stride[dim], id = index.stride[dim], sdim = src.stride[dim], K = index.shape[dim];
  View o = drop_dim(with_shape(out, index, dim), dim), i = drop_dim(index, dim), s = drop_dim(src, dim);
  const View* vs[3] = {&o, &i, &s};
  Strided<3> it = make_strided(vs);
  T* op = out.ptr<T>();
  const S* sp = src.ptr<S>();
  constexpr int64_t kBlock = 256;
  parallel_run(it.numel, std::max<int64_t>(1, kGrain / std::max<int64_t>(K, 1)), [&](int64_t begin, int64_t end) {
    walk(it, begin, end, [&](const int64_t* off, int64_t n) {
      const int64_t so = it.inner_stride(0), si = it.inner_stride(1), ss = it.inner_stride(2);
      for (int64_t j0 = 0; j0 < n; j0 += kBlock) {  // k outer, a block of positions inner
        const int64_t nj = std::min(kBlock, n - j0);
        for (int64_t k = 0; k < K; k++)
          for (int64_t j = j0; j < j0 + nj; j++) {
            int64_t v = index_at(index, off[1] + j * si + k * id);
            acc_add(op[off[0] + j * so + v * od], sp[off[2] + j * ss + k * sdim]);
          }
      }
    });
  });
}
}  // namespace

// out[p with p[dim] = index[p]] += src[p] for p over index's shape; out may be strided (float
// and integer dtypes).
KESTREL_KERNEL(scatter_add) {
  View out = args.view();
  int64_t dim = args.i64();
  View index = args.view(), src = args.view();
  args.done();
  check_index_dtype("scatter_add", index);
  check_dim("scatter_add", dim, out);
  if (src.dtype != out.dtype) throw KernelError(std::string("scatter_add: src dtype ") + dtype_name(src.dtype) + " differs from out " + dtype_name(out.dtype));
  if (index.ndim != out.ndim || !same_shape(index, src))
    throw KernelError("scatter_add: index " + shape_str(index) + ", src " + shape_str(src) + " and out " + shape_str(out) +
                      " must have one rank, and src the index's shape");
  for (int d = 0; d < out.ndim; d++)
    if (d != dim && index.shape[d] > out.shape[d])
      throw KernelError("scatter_add: index " + shape_str(index) + " does not fit out " + shape_str(out) + " along dim " + std::to_string(d));
  check_no_overlap("scatter_add", out);
  if (index.numel() == 0) return;
  if (out.ndim == 0) throw KernelError("scatter_add: out must have at least one dim");
  check_indices("scatter_add", index, out.shape[dim]);
  with_add_types("scatter_add", out, [&](auto t, auto s, const View& target) {
    scatter_add_typed<decltype(t), decltype(s)>(target, int(dim), index, src);
  });
}

namespace {

// Validates a 1-d index against `v` (x or out) and `w` (out or src) that differ only at dim.
void check_select(const char* what, int64_t dim, const View& index, const View& v, const char* vn, const View& w, const char* wn) {
  check_index_dtype(what, index);
  if (index.ndim != 1) throw KernelError(std::string(what) + ": index must be 1-d, got " + shape_str(index));
  check_dim(what, dim, v);
  bool ok = v.ndim == w.ndim && v.ndim > 0;
  for (int d = 0; ok && d < v.ndim; d++) ok = w.shape[d] == (d == dim ? index.shape[0] : v.shape[d]);
  if (!ok)
    throw KernelError(std::string(what) + ": " + wn + " " + shape_str(w) + " must be " + vn + " " + shape_str(v) +
                      " with dim " + std::to_string(dim) + " of size " + std::to_string(index.shape[0]));
  if (v.dtype != w.dtype)
    throw KernelError(std::string(what) + ": " + vn + " dtype " + dtype_name(v.dtype) + " differs from " + wn + " " + dtype_name(w.dtype));
  check_indices(what, index, v.shape[dim]);
}

// Offsets (in a and b) of outer position o, over the dims before dim.
inline void outer_offsets(const View& a, const View& b, int dim, int64_t o, int64_t* oa, int64_t* ob) {
  *oa = *ob = 0;
  for (int d = dim - 1; d >= 0; d--) {
    int64_t id = o % a.shape[d];
    o /= a.shape[d];
    *oa += id * a.stride[d];
    *ob += id * b.stride[d];
  }
}

// The dims after dim of a and b, collapsed.
Strided<2> inner_dims(const View& a, const View& b, int dim) {
  View ia = a, ib = b;
  ia.ndim = ib.ndim = 0;
  for (int d = dim + 1; d < a.ndim; d++) {
    ia.shape[ia.ndim] = a.shape[d];
    ia.stride[ia.ndim++] = a.stride[d];
    ib.shape[ib.ndim] = b.shape[d];
    ib.stride[ib.ndim++] = b.stride[d];
  }
  const View* vs[2] = {&ia, &ib};
  return make_strided(vs);
}

}  // namespace

// out = x with dim replaced by index's entries (1-d); out contiguous, x any dtype.
KESTREL_KERNEL(index_select) {
  View x = args.view();
  int64_t dim = args.i64();
  View index = args.view(), out = args.view();
  args.done();
  check_select("index_select", dim, index, x, "x", out, "out");
  require_contiguous("index_select", out, "out");
  if (out.numel() == 0) return;
  const int d = int(dim);
  const int64_t n = index.shape[0], is = index.stride[0];
  int64_t outer = 1;
  for (int k = 0; k < d; k++) outer *= x.shape[k];
  Strided<2> in = inner_dims(out, x, d);
  with_elem(dtype_size(x.dtype), [&](auto e) {
    using E = decltype(e);
    const E* xp = reinterpret_cast<const E*>(x.data) + x.offset;
    E* op = reinterpret_cast<E*>(out.data) + out.offset;
    parallel_run(outer * n, std::max<int64_t>(1, kGrain / std::max<int64_t>(in.numel, 1)), [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; t++) {
        int64_t oo, ox;
        outer_offsets(out, x, d, t / n, &oo, &ox);
        const int64_t i = t % n, row = index_at(index, i * is);
        E* dst = op + oo + i * out.stride[d];
        const E* src = xp + ox + row * x.stride[d];
        walk(in, 0, in.numel, [&](const int64_t* off, int64_t m) {
          if (in.inner_stride(1) == 1) std::memcpy(dst + off[0], src + off[1], size_t(m) * sizeof(E));
          else for (int64_t c = 0; c < m; c++) dst[off[0] + c] = src[off[1] + c * in.inner_stride(1)];
        });
      }
    });
  });
}

namespace {
template <class T, class S>
void index_add_typed(const View& out, int d, const View& index, const View& src) {
  const int64_t n = index.shape[0], is = index.stride[0];
  int64_t outer = 1;
  for (int k = 0; k < d; k++) outer *= out.shape[k];
  Strided<2> in = inner_dims(out, src, d);
  constexpr int64_t kBlock = 1024;
  const int64_t blocks = (in.numel + kBlock - 1) / kBlock;
  T* op = out.ptr<T>();
  const S* sp = src.ptr<S>();
  // Tasks: (outer position, block of inner positions); each loops over the index in order.
  parallel_run(outer * blocks, std::max<int64_t>(1, kGrain / std::max<int64_t>(n * std::min(in.numel, kBlock), 1)),
               [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++) {
      int64_t oo, os;
      outer_offsets(out, src, d, t / blocks, &oo, &os);
      const int64_t c0 = (t % blocks) * kBlock, c1 = std::min(in.numel, c0 + kBlock);
      for (int64_t i = 0; i < n; i++) {
        T* dst = op + oo + index_at(index, i * is) * out.stride[d];
        const S* s = sp + os + i * src.stride[d];
        walk(in, c0, c1, [&](const int64_t* off, int64_t m) {
          const int64_t so = in.inner_stride(0), ss = in.inner_stride(1);
          if (so == 1 && ss == 1) for (int64_t c = 0; c < m; c++) acc_add(dst[off[0] + c], s[off[1] + c]);
          else for (int64_t c = 0; c < m; c++) acc_add(dst[off[0] + c * so], s[off[1] + c * ss]);
        });
      }
    }
  });
}
}  // namespace

// out[..., index[i], ...] += src[..., i, ...] along dim, in place; out may be strided (float and
// integer dtypes).
KESTREL_KERNEL(index_add) {
  View out = args.view();
  int64_t dim = args.i64();
  View index = args.view(), src = args.view();
  args.done();
  check_select("index_add", dim, index, out, "out", src, "src");
  check_no_overlap("index_add", out);
  if (src.numel() == 0) return;
  with_add_types("index_add", out, [&](auto t, auto s, const View& target) {
    index_add_typed<decltype(t), decltype(s)>(target, int(dim), index, src);
  });
}

}  // namespace kestrel
