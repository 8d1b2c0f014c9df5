// reduce (sum / max / min into a keepdim out) and arg_reduce (argmax / argmin, first index on
// ties, the first NaN wins, as src/backend/ref/reduce.ts). The TypeScript side reorders x's dims
// as [kept..., reduced...] and collapses each group, so output o reduces R elements at
// kept(o) + red(r). Two shapes of work:
//   rows: a block per output (and `splits` blocks per output when outputs are few), the threads
//         striding over r; partial results of split rows go to a float64/int64 buffer that
//         reduce_finish combines in a fixed order (deterministic);
//   cols: a thread per output looping over r (outputs adjacent in memory: coalesced), also for
//         rows of under 64 values, too short to keep a block's threads busy.
// Floats accumulate in double, integers in int64 (sums wrap), NaN propagates through max/min.
#include "common.cuh"

using namespace kst;

enum { SUM = 0, MAX = 1, MIN = 2 };

// Accumulator of a storage type: double for floats, int64 for integers.
template <class T> struct Acc { typedef double type; };
template <> struct Acc<i32> { typedef i64 type; };
template <> struct Acc<i64> { typedef i64 type; };
template <> struct Acc<i8> { typedef i64 type; };
template <> struct Acc<u8> { typedef i64 type; };

KFN double acc_of(float v) { return v; }
KFN double acc_of(double v) { return v; }
KFN double acc_of(bf16 v) { return bf16_to_f32(v.bits); }
KFN double acc_of(f16 v) { return f16_to_f32(v.bits); }
KFN i64 acc_of(i32 v) { return v; }
KFN i64 acc_of(i64 v) { return v; }
KFN i64 acc_of(i8 v) { return v; }
KFN i64 acc_of(u8 v) { return v; }

template <class T> KFN T store_acc(double v) { return from_double<T>(v); }
template <class T> KFN T store_acc(i64 v) { return T(v); }  // integers: wrap, as the CPU stores sums

KFN double identity(int op, double) { return op == SUM ? 0.0 : op == MAX ? -1.0 / 0.0 : 1.0 / 0.0; }
KFN i64 identity(int op, i64) { return op == SUM ? 0 : op == MAX ? (-0x7fffffffffffffffLL - 1) : 0x7fffffffffffffffLL; }

KFN double combine(int op, double a, double b) {
  if (op == SUM) return a + b;
  if (a != a || b != b) return a != a ? a : b;
  return op == MAX ? (a > b ? a : b) : (a < b ? a : b);
}
KFN i64 combine(int op, i64 a, i64 b) {
  if (op == SUM) return i64(u64(a) + u64(b));
  return op == MAX ? (a > b ? a : b) : (a < b ? a : b);
}

// Block-wide combine of one value per thread (blockDim.x a multiple of 32), result in all threads.
template <class A> KFN A block_combine(int op, A v, A* scratch) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (int m = 16; m > 0; m >>= 1) v = combine(op, v, shfl_xor(v, m));
  sync();
  if (lane == 0) scratch[w] = v;
  sync();
  v = lane < nw ? scratch[lane] : identity(op, v);
  for (int m = 16; m > 0; m >>= 1) v = combine(op, v, shfl_xor(v, m));
  return v;
}

template <class T> KFN void reduce_rows_impl(int op, const T* x, const Strided& kept, const Strided& red, i64 R, i64 nout, i32 splits,
                                             T* out, typename Acc<T>::type* partial) {
  typedef typename Acc<T>::type A;
  __shared__ A scratch[32];
  i64 chunk = (R + splits - 1) / splits;
  for (i64 o = blockIdx.x; o < nout; o += gridDim.x) {
    const T* base = x + offset_of(kept, o);
    i64 r0 = i64(blockIdx.y) * chunk, r1 = r0 + chunk < R ? r0 + chunk : R;
    A acc = identity(op, A(0));
    for (i64 r = r0 + threadIdx.x; r < r1; r += blockDim.x) acc = combine(op, acc, acc_of(base[offset_of(red, r)]));
    acc = block_combine(op, acc, scratch);
    if (threadIdx.x == 0) {
      if (splits == 1) out[o] = store_acc<T>(acc);
      else partial[o * splits + blockIdx.y] = acc;
    }
  }
}

template <class T> KFN void reduce_finish_impl(int op, const typename Acc<T>::type* partial, i32 splits, T* out, i64 nout) {
  typedef typename Acc<T>::type A;
  KST_FOR(o, nout) {
    A acc = identity(op, A(0));
    for (int s = 0; s < splits; s++) acc = combine(op, acc, partial[o * splits + s]);
    out[o] = store_acc<T>(acc);
  }
}

template <class T> KFN void reduce_cols_impl(int op, const T* x, const Strided& kept, const Strided& red, i64 R, i64 nout, T* out) {
  typedef typename Acc<T>::type A;
  KST_FOR(o, nout) {
    const T* base = x + offset_of(kept, o);
    A acc = identity(op, A(0));
    for (i64 r = 0; r < R; r++) acc = combine(op, acc, acc_of(base[offset_of(red, r)]));
    out[o] = store_acc<T>(acc);
  }
}

// ---------------------------------------------------------------- argmax / argmin

struct Best {
  double v;
  i64 i;  // -1: nothing yet
};

// The better of two candidates: any NaN beats a number, then the larger (argmax) or smaller
// (argmin) value, then the lower index: associative, so any reduction order gives the reference's.
KFN Best better(int argmin, Best a, Best b) {
  if (a.i < 0) return b;
  if (b.i < 0) return a;
  bool an = a.v != a.v, bn = b.v != b.v;
  if (an || bn) return an && bn ? (a.i < b.i ? a : b) : an ? a : b;
  if (a.v == b.v) return a.i < b.i ? a : b;
  return (argmin ? a.v < b.v : a.v > b.v) ? a : b;
}

template <class T> KFN void arg_reduce_impl(int argmin, const T* x, const Strided& kept, i64 stride, i64 R, i64 nout, i64* out) {
  __shared__ double sv[32];
  __shared__ i64 si[32];
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  for (i64 o = blockIdx.x; o < nout; o += gridDim.x) {
    const T* base = x + offset_of(kept, o);
    Best b;
    b.v = 0;
    b.i = -1;
    for (i64 r = threadIdx.x; r < R; r += blockDim.x) {
      Best c;
      c.v = double(acc_of(base[r * stride]));
      c.i = r;
      b = better(argmin, b, c);
    }
    for (int m = 16; m > 0; m >>= 1) {
      Best c;
      c.v = shfl_xor(b.v, m);
      c.i = shfl_xor(b.i, m);
      b = better(argmin, b, c);
    }
    sync();
    if (lane == 0) {
      sv[w] = b.v;
      si[w] = b.i;
    }
    sync();
    if (w == 0) {
      b.v = lane < nw ? sv[lane] : 0.0;
      b.i = lane < nw ? si[lane] : -1;
      for (int m = 16; m > 0; m >>= 1) {
        Best c;
        c.v = shfl_xor(b.v, m);
        c.i = shfl_xor(b.i, m);
        b = better(argmin, b, c);
      }
      if (lane == 0) out[o] = b.i;
    }
  }
}

#define KST_REDUCE(sfx, T)                                                                                              \
  KERNEL(reduce_rows_##sfx, (i32 op, const T* x, Strided kept, Strided red, i64 R, i64 nout, i32 splits, T* out,         \
                              Acc<T>::type* partial)) { reduce_rows_impl<T>(op, x, kept, red, R, nout, splits, out, partial); } \
  KERNEL(reduce_finish_##sfx, (i32 op, const Acc<T>::type* partial, i32 splits, T* out, i64 nout)) {                      \
    reduce_finish_impl<T>(op, partial, splits, out, nout);                                                               \
  }                                                                                                                      \
  KERNEL(reduce_cols_##sfx, (i32 op, const T* x, Strided kept, Strided red, i64 R, i64 nout, T* out)) {                  \
    reduce_cols_impl<T>(op, x, kept, red, R, nout, out);                                                                 \
  }                                                                                                                      \
  KERNEL(arg_reduce_##sfx, (i32 argmin, const T* x, Strided kept, i64 stride, i64 R, i64 nout, i64* out)) {              \
    arg_reduce_impl<T>(argmin, x, kept, stride, R, nout, out);                                                           \
  }

KST_REDUCE(f32, float)
KST_REDUCE(f64, double)
KST_REDUCE(f16, f16)
KST_REDUCE(bf16, bf16)
KST_REDUCE(i32, i32)
KST_REDUCE(i64, i64)
KST_REDUCE(i8, i8)
KST_REDUCE(u8, u8)
