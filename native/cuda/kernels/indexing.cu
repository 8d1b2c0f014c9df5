// gather / scatter_add (torch.gather, scatter_add_) and index_select / index_add (torch.index_select,
// index_add_) as src/backend/ref/linalg.ts defines them; int32 or int64 indices in [0, size) (a
// negative one is an error, as in PyTorch). An index outside [0, size) is never followed: the
// selects write 0 there, the adds skip it, and the first one found is recorded in `err` (flag,
// op, position, value, size, launch id), which the TypeScript side reads at the next host read
// (src/backend/cuda/index_errors.ts), so the hot path (an embedding's lookup and gradient every
// step) needs no host round trip.
// The adds use atomics: float sums may differ from the CPU's index-order sums by rounding.
#include "common.cuh"

using namespace kst;

// Records an out-of-range index (the first one to win the flag); returns true when v is bad.
KFN bool bad_index(i64* err, i32 op, i64 id, i64 pos, i64 v, i64 size) {
  if (v >= 0 && v < size) return false;
  record_error(err, op, id, pos, v, size);
  return true;
}

// Index element off of an int64 (wide) or int32 index: one kernel for both halves the module.
KFN i64 index_at(const void* index, i32 wide, i64 off) { return wide ? ((const i64*)index)[off] : i64(((const i32*)index)[off]); }

// Exact adds for every target type: float32/float64 atomics, integers wrap (two's complement),
// a 16-bit float source adds into a float32 target (the TypeScript side's scratch copy of out).
KFN void add_to(float* p, float v) { atomic_add(p, v); }
KFN void add_to(float* p, f16 v) { atomic_add(p, f16_to_f32(v.bits)); }
KFN void add_to(float* p, bf16 v) { atomic_add(p, bf16_to_f32(v.bits)); }
KFN void add_to(double* p, double v) { atomic_add(p, v); }
KFN void add_to(i32* p, i32 v) { atomic_add((u32*)p, u32(v)); }
KFN void add_to(i64* p, i64 v) { atomic_add((u64*)p, u64(v)); }
KFN void add_to(i8* p, i8 v) { AddI8 f; f.v = v; atomic_update_narrow((u8*)p, f); }
KFN void add_to(u8* p, u8 v) { AddU8 f; f.v = v; atomic_update_narrow(p, f); }

struct B1 { u8 b; };
struct B2 { u16 b; };
struct B4 { u32 b; };
struct B8 { u64 b; };
struct alignas(16) B16 { u64 lo, hi; };  // rows of index_select moved 16 bytes at a time when aligned

enum { GATHER = 0, SCATTER_ADD = 1, INDEX_SELECT = 2, INDEX_ADD = 3 };

// ---------------------------------------------------------------- gather / scatter_add

// out[i] = x[xs(i) + index[is(i)] * xdim]: i runs over index's shape (out contiguous), xs is
// x seen with index's shape and stride 0 at dim.
template <class E>
KFN void gather_impl(const E* x, const Strided& xs, i64 xdim, i64 size, const void* index, i32 wide, const Strided& is, E* out,
                     i64 n, i64* err, i64 id) {
  KST_FOR(i, n) {
    i64 v = index_at(index, wide, offset_of(is, i));
    if (bad_index(err, GATHER, id, i, v, size)) {
      out[i] = E();
    } else {
      out[i] = x[offset_of(xs, i) + v * xdim];
    }
  }
}

// out[os(i) + index[is(i)] * odim] += src[ss(i)] over index's shape.
template <class T, class S>
KFN void scatter_add_impl(T* out, const Strided& os, i64 odim, i64 size, const void* index, i32 wide, const Strided& is,
                          const S* src, const Strided& ss, i64 n, i64* err, i64 id) {
  KST_FOR(i, n) {
    i64 v = index_at(index, wide, offset_of(is, i));
    if (!bad_index(err, SCATTER_ADD, id, i, v, size)) add_to(out + offset_of(os, i) + v * odim, src[offset_of(ss, i)]);
  }
}

// ---------------------------------------------------------------- index_select / index_add

// Rows r = o * n + j (o over the dims before dim, j over the index), `tpr` threads per row
// (a power of two dividing the block) striding over the row's `inner` elements: a wide row gets
// a whole block with coalesced loads, narrow rows share one.
#define KST_ROWS(r, c0, tpr, rows)                                               \
  const i64 rows_per_block = blockDim.x / (tpr);                                  \
  const i32 c0 = i32(threadIdx.x % (tpr));                                        \
  for (i64 r = i64(blockIdx.x) * rows_per_block + threadIdx.x / (tpr); r < (rows); r += i64(gridDim.x) * rows_per_block)

// out [outer, n, inner] (contiguous) = x at (xo(o), index[j], xi(c)).
template <class E>
KFN void index_select_impl(const E* x, const Strided& xo, i64 xdim, const Strided& xi, i64 size, const void* index,
                           i32 wide, i64 istride, i64 n, E* out, i64 rows, i64 inner, i32 tpr, i64* err, i64 id) {
  KST_ROWS(r, c0, tpr, rows) {
    i64 j = r % n;
    i64 v = index_at(index, wide, j * istride);
    E* dst = out + r * inner;
    if (bad_index(err, INDEX_SELECT, id, j, v, size)) {
      for (i64 c = c0; c < inner; c += tpr) dst[c] = E();
      continue;
    }
    const E* row = x + offset_of(xo, r / n) + v * xdim;
    if (xi.contiguous)
      for (i64 c = c0; c < inner; c += tpr) dst[c] = row[c];
    else
      for (i64 c = c0; c < inner; c += tpr) dst[c] = row[offset_of(xi, c)];
  }
}

// out at (oo(o), index[j], oi(c)) += src at (so(o), j, si(c)).
template <class T, class S>
KFN void index_add_impl(T* out, const Strided& oo, i64 odim, const Strided& oi, i64 size, const void* index, i32 wide,
                        i64 istride, i64 n, const S* src, const Strided& so, i64 sdim, const Strided& si, i64 rows,
                        i64 inner, i32 tpr, i64* err, i64 id) {
  KST_ROWS(r, c0, tpr, rows) {
    i64 j = r % n, o = r / n;
    i64 v = index_at(index, wide, j * istride);
    if (bad_index(err, INDEX_ADD, id, j, v, size)) continue;
    T* dst = out + offset_of(oo, o) + v * odim;
    const S* row = src + offset_of(so, o) + j * sdim;
    if (oi.contiguous && si.contiguous)
      for (i64 c = c0; c < inner; c += tpr) add_to(dst + c, row[c]);
    else
      for (i64 c = c0; c < inner; c += tpr) add_to(dst + offset_of(oi, c), row[offset_of(si, c)]);
  }
}

// Only checks the indices (for calls whose other operands are empty, so no row reads them).
KFN void index_check_impl(const void* index, i32 wide, const Strided& is, i64 n, i64 size, i32 op, i64* err, i64 id) {
  KST_FOR(i, n) bad_index(err, op, id, i, index_at(index, wide, offset_of(is, i)), size);
}

// ---------------------------------------------------------------- instantiations

#define KST_MOVE(bsfx, E)                                                                                                  \
  KERNEL(gather_##bsfx, (const E* x, Strided xs, i64 xdim, i64 size, const void* index, i32 wide, Strided is, E* out, i64 n,  \
                         i64* err, i64 id)) {                                                                                \
    gather_impl<E>(x, xs, xdim, size, index, wide, is, out, n, err, id);                                                     \
  }                                                                                                                          \
  KERNEL(index_select_##bsfx, (const E* x, Strided xo, i64 xdim, Strided xi, i64 size, const void* index, i32 wide,         \
                               i64 istride, i64 n, E* out, i64 rows, i64 inner, i32 tpr, i64* err, i64 id)) {                \
    index_select_impl<E>(x, xo, xdim, xi, size, index, wide, istride, n, out, rows, inner, tpr, err, id);                    \
  }

#define KST_ADD(tsfx, T, S)                                                                                                  \
  KERNEL(scatter_add_##tsfx, (T* out, Strided os, i64 odim, i64 size, const void* index, i32 wide, Strided is, const S* src,  \
                              Strided ss, i64 n, i64* err, i64 id)) {                                                        \
    scatter_add_impl<T, S>(out, os, odim, size, index, wide, is, src, ss, n, err, id);                                       \
  }                                                                                                                          \
  KERNEL(index_add_##tsfx, (T* out, Strided oo, i64 odim, Strided oi, i64 size, const void* index, i32 wide, i64 istride,    \
                            i64 n, const S* src, Strided so, i64 sdim, Strided si, i64 rows, i64 inner, i32 tpr, i64* err,   \
                            i64 id)) {                                                                                       \
    index_add_impl<T, S>(out, oo, odim, oi, size, index, wide, istride, n, src, so, sdim, si, rows, inner, tpr, err, id);    \
  }

KST_MOVE(b1, B1)
KST_MOVE(b2, B2)
KST_MOVE(b4, B4)
KST_MOVE(b8, B8)
KST_MOVE(b16, B16)
KST_ADD(f32, float, float)
KST_ADD(f64, double, double)
KST_ADD(i32, i32, i32)
KST_ADD(i64, i64, i64)
KST_ADD(i8, i8, i8)
KST_ADD(u8, u8, u8)
KST_ADD(f32_from_f16, float, f16)
KST_ADD(f32_from_bf16, float, bf16)

KERNEL(index_check, (const void* index, i32 wide, Strided is, i64 n, i64 size, i32 op, i64* err, i64 id)) {
  index_check_impl(index, wide, is, n, size, op, err, id);
}
