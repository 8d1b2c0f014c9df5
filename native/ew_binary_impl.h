// Binary arithmetic and comparisons, reduction runs and 16-bit float conversions over
// contiguous spans, per ISA (see ew_isa.h), and the table that exports them with the unary ops.
// Scalar loops written so the compiler vectorizes them under the file's target; integer
// arithmetic wraps (two's complement, as typed arrays do), integer division by zero gives 0.
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

// ---------------------------------------------------------------- reductions

// Sum of floats in double: vector accumulators, widened half a register at a time.
static void sum_row_f32(const void* xp, int64_t n, void* accp) {
  const float* x = static_cast<const float*>(xp);
  vd a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int64_t i = 0;
  for (; i + 2 * WF <= n; i += 2 * WF) {
    a0 += __builtin_convertvector(vload<vfh>(x + i), vd);
    a1 += __builtin_convertvector(vload<vfh>(x + i + WF / 2), vd);
    a2 += __builtin_convertvector(vload<vfh>(x + i + WF), vd);
    a3 += __builtin_convertvector(vload<vfh>(x + i + 3 * WF / 2), vd);
  }
  vd t = (a0 + a1) + (a2 + a3);
  double s = 0;
  for (int k = 0; k < WD; k++) s += t[k];
  for (; i < n; i++) s += x[i];
  *static_cast<double*>(accp) += s;
}

static void sum_row_f64(const void* xp, int64_t n, void* accp) {
  const double* x = static_cast<const double*>(xp);
  vd a0 = {}, a1 = {}, a2 = {}, a3 = {};
  int64_t i = 0;
  for (; i + 4 * WD <= n; i += 4 * WD) {
    a0 += vload<vd>(x + i);
    a1 += vload<vd>(x + i + WD);
    a2 += vload<vd>(x + i + 2 * WD);
    a3 += vload<vd>(x + i + 3 * WD);
  }
  vd t = (a0 + a1) + (a2 + a3);
  double s = 0;
  for (int k = 0; k < WD; k++) s += t[k];
  for (; i < n; i++) s += x[i];
  *static_cast<double*>(accp) += s;
}

static void sum_row_i64(const void* xp, int64_t n, void* accp) {
  const uint64_t* x = static_cast<const uint64_t*>(xp);
  uint64_t s = 0;
  for (int64_t i = 0; i < n; i++) s += x[i];
  *static_cast<uint64_t*>(accp) += s;
}

// max/min keeping the first NaN: acc = (x beats acc || x is NaN) ? x : acc.
template <class T, bool Max>
static inline T pick(T acc, T x) {
  return ((Max ? x > acc : x < acc) || x != x) ? x : acc;
}

template <class T, bool Max>
static void ext_row(const void* xp, int64_t n, void* accp) {
  const T* x = static_cast<const T*>(xp);
  T* acc = static_cast<T*>(accp);
  constexpr int L = KESTREL_VBYTES / sizeof(T) * 2;  // two registers of independent lanes
  T lanes[L];
  int64_t i = 0;
  if (n >= L) {
    for (int k = 0; k < L; k++) lanes[k] = x[k];
    for (i = L; i + L <= n; i += L)
      for (int k = 0; k < L; k++) lanes[k] = pick<T, Max>(lanes[k], x[i + k]);
    for (int k = 0; k < L; k++) *acc = pick<T, Max>(*acc, lanes[k]);
  }
  for (; i < n; i++) *acc = pick<T, Max>(*acc, x[i]);
}

template <class T, class A>
static void sum_cols(const void* xp, int64_t n, void* accp) {
  const T* x = static_cast<const T*>(xp);
  A* acc = static_cast<A*>(accp);
  for (int64_t j = 0; j < n; j++) acc[j] = A(acc[j] + A(x[j]));
}

template <class T, bool Max>
static void ext_cols(const void* xp, int64_t n, void* accp) {
  const T* x = static_cast<const T*>(xp);
  T* acc = static_cast<T*>(accp);
  for (int64_t j = 0; j < n; j++) acc[j] = pick<T, Max>(acc[j], x[j]);
}

template <class T>
static void fill_extremes(ReduceFn (&row)[kNumReduce], ReduceFn (&cols)[kNumReduce]) {
  row[MAX] = ext_row<T, true>;
  row[MIN] = ext_row<T, false>;
  cols[MAX] = ext_cols<T, true>;
  cols[MIN] = ext_cols<T, false>;
}

// ---------------------------------------------------------------- 16-bit floats (as runtime.cc, vectorized)

static inline vu f32_to_f16_v(vf x) {
  vu u = (vu)x;
  vu sign = (u >> 16) & 0x8000u;
  vu a = u & 0x7fffffffu;
  vu normal = (a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u) >> 13;
  vu sub = (vu)(vabs(x) + 0.5f) - 0x3f000000u;  // rounds |x| to a multiple of 2^-24, ties to even
  vu r = (vu)((a < 0x38800000u) ? (vi)sub : (vi)normal);
  r = (vu)((a >= 0x477ff000u) ? (vi)(vu{} + 0x7c00u) : (vi)r);
  r = (vu)((a > 0x7f800000u) ? (vi)(0x7e00u | ((a >> 13) & 0x3ffu)) : (vi)r);
  return r | sign;
}

static inline vf f16_to_f32_v(vu h) {
  vu sign = (h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu;
  vu normal = ((h & 0x7fffu) << 13) + 0x38000000u;
  vu special = 0x7f800000u | (m << 13);
  vu sub = (vu)(__builtin_convertvector((vi)m, vf) * 5.9604644775390625e-8f);  // m * 2^-24
  vu r = (vu)((e == 0x1fu) ? (vi)special : (vi)normal);
  r = (vu)((e == 0u) ? (vi)sub : (vi)r);
  return (vf)(r | sign);
}

static inline vu f32_to_bf16_v(vf x) {
  vu u = (vu)x;
  vu rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
  vu nan = (u >> 16) | 0x40u;
  return (vu)(((u & 0x7fffffffu) > 0x7f800000u) ? (vi)nan : (vi)rounded);
}

template <class F>
static inline void to_half_span(const float* s, uint16_t* d, int64_t n, F f) {
  int64_t i = 0;
  for (; i + WF <= n; i += WF) vstore(d + i, __builtin_convertvector(f(vload<vf>(s + i)), vhh));
  if (i < n) {
    float t[WF] = {};
    uint16_t o[WF];
    __builtin_memcpy(t, s + i, (n - i) * 4);
    vstore(o, __builtin_convertvector(f(vload<vf>(t)), vhh));
    __builtin_memcpy(d + i, o, (n - i) * 2);
  }
}

template <class F>
static inline void from_half_span(const uint16_t* s, float* d, int64_t n, F f) {
  int64_t i = 0;
  for (; i + WF <= n; i += WF) vstore(d + i, f(__builtin_convertvector(vload<vhh>(s + i), vu)));
  if (i < n) {
    uint16_t t[WF] = {};
    float o[WF];
    __builtin_memcpy(t, s + i, (n - i) * 2);
    vstore(o, f(__builtin_convertvector(vload<vhh>(t), vu)));
    __builtin_memcpy(d + i, o, (n - i) * 4);
  }
}

static void cvt_f32_f16(const void* s, void* d, int64_t n) {
  to_half_span(static_cast<const float*>(s), static_cast<uint16_t*>(d), n, f32_to_f16_v);
}
static void cvt_f16_f32(const void* s, void* d, int64_t n) {
  from_half_span(static_cast<const uint16_t*>(s), static_cast<float*>(d), n, f16_to_f32_v);
}
static void cvt_f32_bf16(const void* s, void* d, int64_t n) {
  to_half_span(static_cast<const float*>(s), static_cast<uint16_t*>(d), n, f32_to_bf16_v);
}
static void cvt_bf16_f32(const void* s, void* d, int64_t n) {
  from_half_span(static_cast<const uint16_t*>(s), static_cast<float*>(d), n, [&](vu h) { return (vf)(h << 16); });
}

// ---------------------------------------------------------------- transpose of 4-byte elements

// dst[i * ds + j] = src[j * ss + i] for i < ni, j < nj: 8x8 (AVX) or 4x4 (SSE) blocks in
// registers, the ragged edges element by element.
static void transpose32(const void* sp, int64_t ss, void* dp, int64_t ds, int64_t ni, int64_t nj) {
  const float* src = static_cast<const float*>(sp);
  float* dst = static_cast<float*>(dp);
#if KESTREL_VBYTES >= 32
  constexpr int B = 8;
#else
  constexpr int B = 4;
#endif
  int64_t i0 = 0, j0 = 0;
  for (j0 = 0; j0 + B <= nj; j0 += B)
    for (i0 = 0; i0 + B <= ni; i0 += B) {
      const float* s = src + j0 * ss + i0;
      float* d = dst + i0 * ds + j0;
#if KESTREL_VBYTES >= 32
      __m256 r[8], t[8];
      for (int q = 0; q < 8; q++) r[q] = _mm256_loadu_ps(s + q * ss);
      for (int q = 0; q < 8; q += 2) {
        t[q] = _mm256_unpacklo_ps(r[q], r[q + 1]);
        t[q + 1] = _mm256_unpackhi_ps(r[q], r[q + 1]);
      }
      for (int q = 0; q < 8; q += 4) {
        r[q] = _mm256_shuffle_ps(t[q], t[q + 2], 0x44);
        r[q + 1] = _mm256_shuffle_ps(t[q], t[q + 2], 0xee);
        r[q + 2] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0x44);
        r[q + 3] = _mm256_shuffle_ps(t[q + 1], t[q + 3], 0xee);
      }
      for (int q = 0; q < 4; q++) {
        _mm256_storeu_ps(d + q * ds, _mm256_permute2f128_ps(r[q], r[q + 4], 0x20));
        _mm256_storeu_ps(d + (q + 4) * ds, _mm256_permute2f128_ps(r[q], r[q + 4], 0x31));
      }
#else
      __m128 r0 = _mm_loadu_ps(s), r1 = _mm_loadu_ps(s + ss), r2 = _mm_loadu_ps(s + 2 * ss), r3 = _mm_loadu_ps(s + 3 * ss);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
      _mm_storeu_ps(d, r0);
      _mm_storeu_ps(d + ds, r1);
      _mm_storeu_ps(d + 2 * ds, r2);
      _mm_storeu_ps(d + 3 * ds, r3);
#endif
    }
  const int64_t bi = ni / B * B, bj = nj / B * B;
  for (int64_t i = 0; i < ni; i++)
    for (int64_t j = (i < bi ? bj : 0); j < nj; j++) dst[i * ds + j] = src[j * ss + i];
}

// ---------------------------------------------------------------- the table

static IsaTable build_table(const char* name) {
  IsaTable t = {};
  t.name = name;
#define SET_F(CODE, NAME)                  \
  t.unary[S_F32][CODE] = f32_##NAME;       \
  t.unary[S_F64][CODE] = f64_##NAME;       \
  t.unary_grad[0][CODE] = f32g_##NAME;     \
  t.unary_grad[1][CODE] = f64g_##NAME;
  SET_F(NEG, neg) SET_F(EXP, exp) SET_F(LOG, log) SET_F(SQRT, sqrt) SET_F(RSQRT, rsqrt) SET_F(ABS, abs)
  SET_F(TANH, tanh) SET_F(SIGMOID, sigmoid) SET_F(RELU, relu) SET_F(SILU, silu) SET_F(GELU_TANH, gelu_tanh)
  SET_F(GELU_ERF, gelu_erf) SET_F(SIN, sin) SET_F(COS, cos) SET_F(FLOOR, floor) SET_F(SIGN, sign)
  SET_F(RECIPROCAL, reciprocal) SET_F(POW_SCALAR, pow_scalar) SET_F(CLAMP, clamp)
#undef SET_F
  t.unary[S_I32][NEG] = IntUnary<int32_t>::neg;
  t.unary[S_I32][ABS] = IntUnary<int32_t>::abs;
  t.unary[S_I32][SIGN] = IntUnary<int32_t>::sign;
  t.unary[S_I32][CLAMP] = IntUnary<int32_t>::clamp;
  t.unary[S_I64][NEG] = IntUnary<int64_t>::neg;
  t.unary[S_I64][ABS] = IntUnary<int64_t>::abs;
  t.unary[S_I64][SIGN] = IntUnary<int64_t>::sign;
  t.unary[S_I64][CLAMP] = IntUnary<int64_t>::clamp;
  fill_binary<float>(t.binary[S_F32]);
  fill_binary<double>(t.binary[S_F64]);
  fill_binary<int32_t>(t.binary[S_I32]);
  fill_binary<int64_t>(t.binary[S_I64]);
  t.reduce_row[S_F32][SUM] = sum_row_f32;
  t.reduce_row[S_F64][SUM] = sum_row_f64;
  t.reduce_row[S_I64][SUM] = sum_row_i64;
  t.reduce_cols[S_F32][SUM] = sum_cols<float, double>;
  t.reduce_cols[S_F64][SUM] = sum_cols<double, double>;
  t.reduce_cols[S_I64][SUM] = sum_cols<uint64_t, uint64_t>;
  fill_extremes<float>(t.reduce_row[S_F32], t.reduce_cols[S_F32]);
  fill_extremes<double>(t.reduce_row[S_F64], t.reduce_cols[S_F64]);
  fill_extremes<int32_t>(t.reduce_row[S_I32], t.reduce_cols[S_I32]);
  fill_extremes<int64_t>(t.reduce_row[S_I64], t.reduce_cols[S_I64]);
  t.f32_to_f16 = cvt_f32_f16;
  t.f16_to_f32 = cvt_f16_f32;
  t.f32_to_bf16 = cvt_f32_bf16;
  t.bf16_to_f32 = cvt_bf16_f32;
  t.transpose32 = transpose32;
  return t;
}
