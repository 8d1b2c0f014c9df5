// Kernels unary, unary_grad, binary and where (src/backend/kernels.ts): validation, dim
// collapsing (strided.h) and threading here; the math runs on contiguous runs through the
// per-ISA spans of ew_isa.h. A run whose operand is strided is gathered into a small stack
// buffer first; a broadcast operand (stride 0) is passed as one scalar.
#include <cmath>
#include <cstring>
#include <string>

#include "ew_isa.h"
#include "strided.h"

namespace kestrel {
namespace ew {

const char* const kUnaryNames[kNumUnary] = {
    "neg", "exp", "log", "sqrt", "rsqrt", "abs", "tanh", "sigmoid", "relu", "silu", "gelu_tanh", "gelu_erf",
    "sin", "cos", "floor", "sign", "reciprocal", "pow_scalar", "clamp"};
const char* const kBinaryNames[kNumBinary] = {"add", "sub", "mul", "div", "pow", "maximum", "minimum",
                                              "eq",  "ne",  "lt",  "le",  "gt",  "ge"};

const IsaTable& isa() {
  static const IsaTable* t = [] {
    const CpuFeatures& f = cpu_features();
    if (f.avx512f && f.avx2 && f.fma) return &isa_avx512();
    if (f.avx2 && f.fma) return &isa_avx2();
    return &isa_sse2();
  }();
  return *t;
}

namespace {

constexpr int64_t kChunk = 512;  // elements per gathered block (4 KB of doubles)

// dst[i] = src[i * stride] for i < n, elements of es bytes.
void gather(const char* src, int64_t stride, char* dst, int64_t n, size_t es) {
  switch (es) {
    case 8: for (int64_t i = 0; i < n; i++) std::memcpy(dst + 8 * i, src + 8 * i * stride, 8); break;
    case 4: for (int64_t i = 0; i < n; i++) std::memcpy(dst + 4 * i, src + 4 * i * stride, 4); break;
    case 2: for (int64_t i = 0; i < n; i++) std::memcpy(dst + 2 * i, src + 2 * i * stride, 2); break;
    default: for (int64_t i = 0; i < n; i++) dst[i] = src[i * stride]; break;
  }
}

// Copies element 0 of p (es bytes) to elements 1..n-1.
void replicate(char* p, int64_t n, size_t es) {
  for (int64_t i = 1; i < n; i++) std::memcpy(p + i * es, p, es);
}

int64_t check_op(const char* what, int64_t op, int64_t count) {
  if (op < 0 || op >= count) throw KernelError(std::string(what) + ": unknown op code " + std::to_string(op));
  return op;
}

inline char* at(const View& v, int64_t off) { return v.data + (v.offset + off) * int64_t(dtype_size(v.dtype)); }

// neg / abs / sign / clamp of int8, uint8 and bool, which the op layer passes through: computed
// in int64 (clamp in double) and stored as the reference stores them: wrapping, bool as x != 0.
template <class T, int Op, bool Bool>
void small_int_unary(const void* xp, void* yp, int64_t n, double lo, double hi, bool) {
  const T* x = static_cast<const T*>(xp);
  T* y = static_cast<T*>(yp);
  for (int64_t i = 0; i < n; i++) {
    int64_t v = x[i], r;
    if (Op == NEG) r = -v;
    else if (Op == ABS) r = v < 0 ? -v : v;
    else if (Op == SIGN) r = (v > 0) - (v < 0);
    else {
      double d = double(v) < lo ? lo : double(v);
      d = d > hi ? hi : d;
      r = std::isfinite(d) && std::fabs(d) < 9e18 ? int64_t(d) : 0;  // ToInt8 / ToUint8 of inf is 0
    }
    y[i] = Bool ? T(r != 0) : T(r);
  }
}

template <class T, bool Bool = false>
UnaryFn small_int_fn(int64_t op) {
  switch (op) {
    case NEG: return small_int_unary<T, NEG, Bool>;
    case ABS: return small_int_unary<T, ABS, Bool>;
    case SIGN: return small_int_unary<T, SIGN, Bool>;
    case CLAMP: return small_int_unary<T, CLAMP, Bool>;
  }
  return nullptr;
}

}  // namespace

}  // namespace ew

using namespace ew;

// out = f(x); x strided (f32/f64; neg/abs/sign/clamp also i32/i64), out contiguous, same dtype.
KESTREL_KERNEL(unary) {
  int64_t op = check_op("unary", args.i64(), kNumUnary);
  View x = args.view(), out = args.view();
  double p0 = args.num(), p1 = args.num();
  args.done();
  int slot = slot_of(x.dtype);
  UnaryFn fn = slot >= 0 ? isa().unary[slot][op] : nullptr;
  if (x.dtype == I8) fn = small_int_fn<int8_t>(op);
  if (x.dtype == U8) fn = small_int_fn<uint8_t>(op);
  if (x.dtype == BOOL) fn = small_int_fn<uint8_t, true>(op);
  if (!fn) throw KernelError(std::string("unary: ") + kUnaryNames[op] + " does not support dtype " + dtype_name(x.dtype));
  if (out.dtype != x.dtype)
    throw KernelError(std::string("unary: out dtype ") + dtype_name(out.dtype) + " differs from x dtype " + dtype_name(x.dtype));
  require_same_shape("unary", x, "x", out, "out");
  require_contiguous("unary", out, "out");
  const size_t es = dtype_size(x.dtype);
  const View* vs[2] = {&out, &x};
  Strided<2> s = make_strided(vs);
  const int64_t sx = s.inner_stride(1);
  const bool big = s.numel * int64_t(es) >= kStreamBytes;
  parallel_run(s.numel, kGrain, [&](int64_t begin, int64_t end) {
    alignas(64) char buf[kChunk * 8];
    walk(s, begin, end, [&](const int64_t* off, int64_t n) {
      char* o = at(out, off[0]);
      const char* xp = at(x, off[1]);
      if (sx == 1) {
        fn(xp, o, n, p0, p1, big && n >= kStreamMinRun);
      } else if (sx == 0) {
        fn(xp, o, 1, p0, p1, false);
        replicate(o, n, es);
      } else {
        for (int64_t i = 0; i < n; i += kChunk) {
          int64_t m = std::min(kChunk, n - i);
          gather(xp + i * sx * es, sx, buf, m, es);
          fn(buf, o + i * es, m, p0, p1, false);
        }
      }
    });
  });
}

// dx = dy * f'(x); x and dy strided, dx contiguous, all one shape and dtype (f32/f64).
KESTREL_KERNEL(unary_grad) {
  int64_t op = check_op("unary_grad", args.i64(), kNumUnary);
  View x = args.view(), dy = args.view(), dx = args.view();
  double p0 = args.num(), p1 = args.num();
  args.done();
  if (x.dtype != F32 && x.dtype != F64)
    throw KernelError(std::string("unary_grad: ") + kUnaryNames[op] + " does not support dtype " + dtype_name(x.dtype));
  if (dy.dtype != x.dtype || dx.dtype != x.dtype)
    throw KernelError(std::string("unary_grad: dtypes x=") + dtype_name(x.dtype) + " dy=" + dtype_name(dy.dtype) +
                      " dx=" + dtype_name(dx.dtype) + " must agree");
  require_same_shape("unary_grad", x, "x", dy, "dy");
  require_same_shape("unary_grad", x, "x", dx, "dx");
  require_contiguous("unary_grad", dx, "dx");
  UnaryGradFn fn = isa().unary_grad[x.dtype == F32 ? 0 : 1][op];
  const size_t es = dtype_size(x.dtype);
  const View* vs[3] = {&dx, &x, &dy};
  Strided<3> s = make_strided(vs);
  const int64_t sx = s.inner_stride(1), sg = s.inner_stride(2);
  const bool big = s.numel * int64_t(es) >= kStreamBytes;
  parallel_run(s.numel, kGrain, [&](int64_t begin, int64_t end) {
    alignas(64) char bx[kChunk * 8], bg[kChunk * 8];
    walk(s, begin, end, [&](const int64_t* off, int64_t n) {
      char* o = at(dx, off[0]);
      const char* xp = at(x, off[1]);
      const char* gp = at(dy, off[2]);
      if (sx == 1 && sg == 1) { fn(xp, gp, o, n, p0, p1, big && n >= kStreamMinRun); return; }
      for (int64_t i = 0; i < n; i += kChunk) {
        int64_t m = std::min(kChunk, n - i);
        gather(xp + i * sx * es, sx, bx, m, es);
        gather(gp + i * sg * es, sg, bg, m, es);
        fn(bx, bg, o + i * es, m, p0, p1, false);
      }
    });
  });
}

// out = a op b; a and b expanded to out's shape (stride 0 broadcast), out contiguous.
KESTREL_KERNEL(binary) {
  int64_t op = check_op("binary", args.i64(), kNumBinary);
  View a = args.view(), b = args.view(), out = args.view();
  args.done();
  const bool cmp = op >= kFirstCompare;
  int slot = slot_of(a.dtype);
  if (slot < 0 || b.dtype != a.dtype)
    throw KernelError(std::string("binary: ") + kBinaryNames[op] + " needs a and b of one dtype among float32, float64, int32, int64; got " +
                      dtype_name(a.dtype) + " and " + dtype_name(b.dtype));
  if (out.dtype != (cmp ? int(BOOL) : a.dtype))
    throw KernelError(std::string("binary: ") + kBinaryNames[op] + " writes " + (cmp ? "bool" : dtype_name(a.dtype)) +
                      ", out is " + dtype_name(out.dtype));
  require_same_shape("binary", a, "a", out, "out");
  require_same_shape("binary", b, "b", out, "out");
  require_contiguous("binary", out, "out");
  const BinaryFn* fns = isa().binary[slot][op];
  const size_t es = dtype_size(a.dtype), os = dtype_size(out.dtype);
  const View* vs[3] = {&out, &a, &b};
  Strided<3> s = make_strided(vs);
  const int64_t sa = s.inner_stride(1), sb = s.inner_stride(2);
  const bool big = s.numel * int64_t(os) >= kStreamBytes;
  parallel_run(s.numel, kGrain, [&](int64_t begin, int64_t end) {
    alignas(64) char ba[kChunk * 8], bb[kChunk * 8];
    walk(s, begin, end, [&](const int64_t* off, int64_t n) {
      char* o = at(out, off[0]);
      const char* ap = at(a, off[1]);
      const char* bp = at(b, off[2]);
      const bool stream = big && n >= kStreamMinRun;
      if (sa == 1 && sb == 1) { fns[0](ap, bp, o, n, stream); return; }
      if (sa == 1 && sb == 0) { fns[1](ap, bp, o, n, stream); return; }
      if (sa == 0 && sb == 1) { fns[2](ap, bp, o, n, stream); return; }
      if (sa == 0 && sb == 0) { fns[0](ap, bp, o, 1, false); replicate(o, n, os); return; }
      for (int64_t i = 0; i < n; i += kChunk) {
        int64_t m = std::min(kChunk, n - i);
        const char* pa = ap;
        const char* pb = bp;
        if (sa != 0) { gather(ap + i * sa * es, sa, ba, m, es); pa = ba; }
        if (sb != 0) { gather(bp + i * sb * es, sb, bb, m, es); pb = bb; }
        fns[sa == 0 ? 2 : sb == 0 ? 1 : 0](pa, pb, o + i * os, m, false);
      }
    });
  });
}

namespace {
// A contiguous cond with a and b each contiguous (1) or one broadcast scalar (0): loops the
// compiler vectorizes.
template <class T, int SA, int SB>
void where_fast(const uint8_t* c, const T* a, const T* b, T* o, int64_t n) {
  const T as = *a, bs = *b;
  for (int64_t i = 0; i < n; i++) {  // both sides loaded, then selected: no branch to vectorize around
    const T x = SA ? a[i] : as, y = SB ? b[i] : bs;
    o[i] = c[i] ? x : y;
  }
}

template <class T>
void where_run(const uint8_t* c, int64_t sc, const T* a, int64_t sa, const T* b, int64_t sb, T* o, int64_t n) {
  if (sc == 1 && (sa == 0 || sa == 1) && (sb == 0 || sb == 1)) {
    if (sa == 1 && sb == 1) where_fast<T, 1, 1>(c, a, b, o, n);
    else if (sa == 1) where_fast<T, 1, 0>(c, a, b, o, n);
    else if (sb == 1) where_fast<T, 0, 1>(c, a, b, o, n);
    else where_fast<T, 0, 0>(c, a, b, o, n);
  } else {
    for (int64_t i = 0; i < n; i++) o[i] = c[i * sc] ? a[i * sa] : b[i * sb];
  }
}
}  // namespace

// out = cond ? a : b; cond bool/uint8, a/b/out one dtype (any), all expanded to out's shape.
KESTREL_KERNEL(where) {
  View c = args.view(), a = args.view(), b = args.view(), out = args.view();
  args.done();
  require_dtype("where", c, "cond", c.dtype == BOOL || c.dtype == U8, "bool or uint8");
  if (a.dtype != out.dtype || b.dtype != out.dtype)
    throw KernelError(std::string("where: a, b and out dtypes differ (") + dtype_name(a.dtype) + ", " + dtype_name(b.dtype) +
                      ", " + dtype_name(out.dtype) + ")");
  require_same_shape("where", c, "cond", out, "out");
  require_same_shape("where", a, "a", out, "out");
  require_same_shape("where", b, "b", out, "out");
  require_contiguous("where", out, "out");
  const size_t es = dtype_size(out.dtype);
  const View* vs[4] = {&out, &c, &a, &b};
  Strided<4> s = make_strided(vs);
  const int64_t sc = s.inner_stride(1), sa = s.inner_stride(2), sb = s.inner_stride(3);
  parallel_run(s.numel, kGrain, [&](int64_t begin, int64_t end) {
    walk(s, begin, end, [&](const int64_t* off, int64_t n) {
      const uint8_t* cp = reinterpret_cast<const uint8_t*>(at(c, off[1]));
      const char *ap = at(a, off[2]), *bp = at(b, off[3]);
      char* o = at(out, off[0]);
      switch (es) {
        case 8: where_run(cp, sc, (const uint64_t*)ap, sa, (const uint64_t*)bp, sb, (uint64_t*)o, n); break;
        case 4: where_run(cp, sc, (const uint32_t*)ap, sa, (const uint32_t*)bp, sb, (uint32_t*)o, n); break;
        case 2: where_run(cp, sc, (const uint16_t*)ap, sa, (const uint16_t*)bp, sb, (uint16_t*)o, n); break;
        default: where_run(cp, sc, (const uint8_t*)ap, sa, (const uint8_t*)bp, sb, (uint8_t*)o, n); break;
      }
    });
  });
}

}  // namespace kestrel
