// Binary arithmetic and comparisons over contiguous spans, per ISA (see ew_isa.h): scalar
// loops written so the compiler vectorizes them under the file's target, and explicit vectors
// with non-temporal stores for large float outputs. Integer arithmetic wraps (two's complement,
// as typed arrays do); integer division by zero gives 0 (the reference's trunc(a / 0) for int32).
// Included by the ew_<isa>.cc files inside their namespace, after ew_unary_impl.h.

template <class T>
using Unsigned = typename std::make_unsigned<T>::type;
template <class T>
constexpr bool kIsInt = std::numeric_limits<T>::is_integer;

struct OpAdd { template <class T> static T f(T a, T b) { if constexpr (kIsInt<T>) return T(Unsigned<T>(a) + Unsigned<T>(b)); else return a + b; } };
struct OpSub { template <class T> static T f(T a, T b) { if constexpr (kIsInt<T>) return T(Unsigned<T>(a) - Unsigned<T>(b)); else return a - b; } };
struct OpMul { template <class T> static T f(T a, T b) { if constexpr (kIsInt<T>) return T(Unsigned<T>(a) * Unsigned<T>(b)); else return a * b; } };
struct OpDiv {
  template <class T> static T f(T a, T b) {
    if constexpr (kIsInt<T>) {
      if (b == 0) return 0;  // the reference: trunc(a / 0) stores 0
      if (b == -1) return T(Unsigned<T>(0) - Unsigned<T>(a));
      return a / b;
    } else {
      return a / b;
    }
  }
};
struct OpPow {
  template <class T> static T f(T a, T b) {
    if constexpr (kIsInt<T>) {
      if (b < 0) return a == 1 ? 1 : a == -1 ? ((b & 1) ? -1 : 1) : 0;
      Unsigned<T> r = 1, base = Unsigned<T>(a);
      for (uint64_t e = uint64_t(b); e; e >>= 1) {
        if (e & 1) r *= base;
        base *= base;
      }
      return T(r);
    } else if constexpr (sizeof(T) == 4) {
      return b == 2 ? a * a : float(std::pow(double(a), double(b)));
    } else {
      return std::pow(a, b);
    }
  }
};
// NaN-propagating max/min (the reference's maximum/minimum).
struct OpMax { template <class T> static T f(T a, T b) { T m = a > b ? a : b; return a != a ? a : b != b ? b : m; } };
struct OpMin { template <class T> static T f(T a, T b) { T m = a < b ? a : b; return a != a ? a : b != b ? b : m; } };
struct OpEq { template <class T> static uint8_t f(T a, T b) { return a == b; } };
struct OpNe { template <class T> static uint8_t f(T a, T b) { return a != b; } };
struct OpLt { template <class T> static uint8_t f(T a, T b) { return a < b; } };
struct OpLe { template <class T> static uint8_t f(T a, T b) { return a <= b; } };
struct OpGt { template <class T> static uint8_t f(T a, T b) { return a > b; } };
struct OpGe { template <class T> static uint8_t f(T a, T b) { return a >= b; } };

// Vector forms of the float ops, for the streaming path (same IEEE results as Op::f).
template <class T> struct VecOf;
template <> struct VecOf<float> { using V = vf; };
template <> struct VecOf<double> { using V = vd; };
template <> struct VecOf<int32_t> { using V = vi; };
template <> struct VecOf<int64_t> { using V = vl; };
template <class V> inline V vop(OpAdd, V a, V b) { return a + b; }
template <class V> inline V vop(OpSub, V a, V b) { return a - b; }
template <class V> inline V vop(OpMul, V a, V b) { return a * b; }
template <class V> inline V vop(OpDiv, V a, V b) { return a / b; }
template <class V> inline V vop(OpMax, V a, V b) { V m = a > b ? a : b; m = a != a ? a : m; return b != b ? (a != a ? a : b) : m; }
template <class V> inline V vop(OpMin, V a, V b) { V m = a < b ? a : b; m = a != a ? a : m; return b != b ? (a != a ? a : b) : m; }
template <class Op> constexpr bool kVecOp =
    std::is_same<Op, OpAdd>::value || std::is_same<Op, OpSub>::value || std::is_same<Op, OpMul>::value ||
    std::is_same<Op, OpDiv>::value || std::is_same<Op, OpMax>::value || std::is_same<Op, OpMin>::value;

// Float arithmetic with non-temporal stores from the first aligned element of o.
template <class T, class Op, int Var>
static void bin_stream(const T* a, const T* b, T* o, int64_t n) {
  using V = typename VecOf<T>::V;
  constexpr int W = KESTREL_VBYTES / sizeof(T);
  auto at = [&](int64_t i) { return Op::f(Var == 2 ? *a : a[i], Var == 1 ? *b : b[i]); };
  int64_t i = head_count(o, n);
  for (int64_t j = 0; j < i; j++) o[j] = at(j);
  const V sa = V{} + *a, sb = V{} + *b;
  for (; i + W <= n; i += W)
    vput<true>(o + i, vop(Op{}, Var == 2 ? sa : vload<V>(a + i), Var == 1 ? sb : vload<V>(b + i)));
  for (; i < n; i++) o[i] = at(i);
  _mm_sfence();
}

template <class T, class R, class Op, int V>
static void bin_span(const void* ap, const void* bp, void* op, int64_t n, bool stream) {
  const T* a = static_cast<const T*>(ap);
  const T* b = static_cast<const T*>(bp);
  R* o = static_cast<R*>(op);
  if constexpr (!kIsInt<T> && std::is_same<T, R>::value && kVecOp<Op>) {
    if (stream) return bin_stream<T, Op, V>(a, b, o, n);
  }
  if (V == 0) {
    for (int64_t i = 0; i < n; i++) o[i] = R(Op::f(a[i], b[i]));
  } else if (V == 1) {
    const T s = *b;
    for (int64_t i = 0; i < n; i++) o[i] = R(Op::f(a[i], s));
  } else {
    const T s = *a;
    for (int64_t i = 0; i < n; i++) o[i] = R(Op::f(s, b[i]));
  }
}

template <class T, class R, class Op>
static void set_binary(BinaryFn (&t)[3]) {
  t[0] = bin_span<T, R, Op, 0>;
  t[1] = bin_span<T, R, Op, 1>;
  t[2] = bin_span<T, R, Op, 2>;
}

template <class T>
static void fill_binary(BinaryFn (&t)[kNumBinary][3]) {
  set_binary<T, T, OpAdd>(t[ADD]);
  set_binary<T, T, OpSub>(t[SUB]);
  set_binary<T, T, OpMul>(t[MUL]);
  set_binary<T, T, OpDiv>(t[DIV]);
  set_binary<T, T, OpPow>(t[POW]);
  set_binary<T, T, OpMax>(t[MAXIMUM]);
  set_binary<T, T, OpMin>(t[MINIMUM]);
  set_binary<T, uint8_t, OpEq>(t[EQ]);
  set_binary<T, uint8_t, OpNe>(t[NE]);
  set_binary<T, uint8_t, OpLt>(t[LT]);
  set_binary<T, uint8_t, OpLe>(t[LE]);
  set_binary<T, uint8_t, OpGt>(t[GT]);
  set_binary<T, uint8_t, OpGe>(t[GE]);
}
