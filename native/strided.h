// Strided iteration shared by the elementwise, copy, reduce and indexing kernels (the idea of
// PyTorch's TensorIterator, much smaller): N views of one shape are reduced to the fewest dims
// (size-1 dims dropped, dims that are contiguous in every operand merged), and a flat range of
// elements is walked as runs along the innermost dim with an index counter, so the hot loop
// never divides. Offsets count elements relative to each view's own offset.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>

#include "kernel_api.h"

namespace kestrel {

// Stable insertion sort of a few items (dims): no allocation, unlike std::stable_sort.
template <class T, class Less>
inline void small_stable_sort(T* a, int n, Less less) {
  for (int i = 1; i < n; i++) {
    T v = a[i];
    int j = i;
    for (; j > 0 && less(v, a[j - 1]); j--) a[j] = a[j - 1];
    a[j] = v;
  }
}

template <int N>
struct Strided {
  int ndim = 0;
  int64_t shape[kMaxDims] = {0};
  int64_t stride[N][kMaxDims] = {{0}};
  int64_t numel = 1;

  int64_t inner() const { return ndim ? shape[ndim - 1] : 1; }
  int64_t inner_stride(int k) const { return ndim ? stride[k][ndim - 1] : 0; }
};

// Builds the collapsed iteration space of views that all have views[0]'s shape. When
// `sort_by` >= 0 the dims are first ordered by that operand's strides, largest outermost
// (the order its memory is laid out in; ties keep the logical order).
template <int N>
Strided<N> make_strided(const View* const (&views)[N], int sort_by = -1) {
  Strided<N> s;
  const View& v0 = *views[0];
  int order[kMaxDims];
  int nd = 0;
  for (int d = 0; d < v0.ndim; d++) {
    s.numel *= v0.shape[d];
    if (v0.shape[d] != 1) order[nd++] = d;
  }
  if (s.numel == 0) { s.ndim = 0; return s; }
  if (sort_by >= 0)
    small_stable_sort(order, nd, [&](int a, int b) { return views[sort_by]->stride[a] > views[sort_by]->stride[b]; });
  int out = -1;
  for (int i = 0; i < nd; i++) {
    int d = order[i];
    bool merge = out >= 0;
    for (int k = 0; k < N && merge; k++)
      merge = s.stride[k][out] == views[k]->stride[d] * v0.shape[d];
    if (merge) {
      s.shape[out] *= v0.shape[d];
      for (int k = 0; k < N; k++) s.stride[k][out] = views[k]->stride[d];
    } else {
      out++;
      s.shape[out] = v0.shape[d];
      for (int k = 0; k < N; k++) s.stride[k][out] = views[k]->stride[d];
    }
  }
  s.ndim = out + 1;
  return s;
}

// Calls f(off, n) for the runs of elements [begin, end) in row-major order of s: off[k] is
// operand k's element offset of the run's first element, n the run length; consecutive
// elements of a run are s.inner_stride(k) apart in operand k.
template <int N, class F>
void walk(const Strided<N>& s, int64_t begin, int64_t end, F&& f) {
  int64_t off[N] = {0};
  if (begin >= end) return;
  if (s.ndim == 0) { f(off, int64_t(1)); return; }
  const int nd = s.ndim;
  int64_t idx[kMaxDims];
  int64_t r = begin;
  for (int d = nd - 1; d >= 0; d--) {
    idx[d] = r % s.shape[d];
    r /= s.shape[d];
    for (int k = 0; k < N; k++) off[k] += idx[d] * s.stride[k][d];
  }
  const int64_t inner = s.shape[nd - 1];
  for (int64_t pos = begin; pos < end;) {
    int64_t n = std::min(inner - idx[nd - 1], end - pos);
    f(off, n);
    pos += n;
    idx[nd - 1] += n;
    for (int k = 0; k < N; k++) off[k] += n * s.stride[k][nd - 1];
    if (idx[nd - 1] < inner) continue;
    for (int k = 0; k < N; k++) off[k] -= inner * s.stride[k][nd - 1];
    idx[nd - 1] = 0;
    for (int d = nd - 2; d >= 0; d--) {
      for (int k = 0; k < N; k++) off[k] += s.stride[k][d];
      if (++idx[d] < s.shape[d]) break;
      for (int k = 0; k < N; k++) off[k] -= s.shape[d] * s.stride[k][d];
      idx[d] = 0;
    }
  }
}

// ---------------------------------------------------------------- validation helpers

inline bool same_shape(const View& a, const View& b) {
  if (a.ndim != b.ndim) return false;
  for (int i = 0; i < a.ndim; i++)
    if (a.shape[i] != b.shape[i]) return false;
  return true;
}

inline void require_same_shape(const char* what, const View& a, const char* an, const View& b, const char* bn) {
  if (!same_shape(a, b))
    throw KernelError(std::string(what) + ": " + an + " " + shape_str(a) + " and " + bn + " " + shape_str(b) +
                      " must have the same shape");
}

inline void require_contiguous(const char* what, const View& v, const char* name) {
  if (!v.contiguous()) throw KernelError(std::string(what) + ": " + name + " " + shape_str(v) + " must be contiguous");
}

inline void require_dtype(const char* what, const View& v, const char* name, bool ok, const char* allowed) {
  if (!ok)
    throw KernelError(std::string(what) + ": " + name + " has dtype " + dtype_name(v.dtype) + " (expected " + allowed + ")");
}

// Elements per parallel task: small tensors stay on the calling thread.
constexpr int64_t kGrain = 32768;

// parallel_for for a lambda of any size: the std::function it builds holds one reference, which
// fits its small-object buffer, so a kernel call does not allocate.
template <class F>
inline void parallel_run(int64_t n, int64_t grain, const F& f) {
  parallel_for(n, grain, [&f](int64_t begin, int64_t end) { f(begin, end); });
}

}  // namespace kestrel
