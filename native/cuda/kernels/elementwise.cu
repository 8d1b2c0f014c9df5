// unary, unary_grad, binary and where: the formulas of src/backend/ref/math.ts, float32 computed
// in float and float64 in double, bfloat16/float16 loaded into float and rounded once when stored
// (= the float32 kernel on upcast inputs, cast back); integers wrap (two's complement) as typed
// arrays do. Inputs are strided (broadcast operands have stride 0), outputs contiguous; one
// grid-stride loop each.
#include "common.cuh"

using namespace kst;

// Op codes: the index in UNARY_OPS / ARITH_OPS + COMPARE_OPS (src/backend/kernels.ts).
enum { NEG, EXP, LOG, SQRT, RSQRT, ABS, TANH, SIGMOID, RELU, SILU, GELU_TANH, GELU_ERF, SIN, COS, FLOOR, SIGN, RECIPROCAL, POW_SCALAR, CLAMP };
enum { ADD, SUB, MUL, DIV, POW, MAXIMUM, MINIMUM, EQ, NE, LT, LE, GT, GE };

template <class T> KFN T sigmoid_of(T x) { return T(1) / (T(1) + exp(-x)); }
KFN float sigmoid_of(float x) { return 1.0f / (1.0f + expf(-x)); }

KFN float math_exp(float x) { return expf(x); }
KFN double math_exp(double x) { return exp(x); }
KFN float math_log(float x) { return logf(x); }
KFN double math_log(double x) { return log(x); }
KFN float math_sqrt(float x) { return sqrtf(x); }
KFN double math_sqrt(double x) { return sqrt(x); }
KFN float math_tanh(float x) { return tanhf(x); }
KFN double math_tanh(double x) { return tanh(x); }
KFN float math_erfc(float x) { return erfcf(x); }
KFN double math_erfc(double x) { return erfc(x); }
KFN float math_sin(float x) { return sinf(x); }
KFN double math_sin(double x) { return sin(x); }
KFN float math_cos(float x) { return cosf(x); }
KFN double math_cos(double x) { return cos(x); }
KFN float math_floor(float x) { return floorf(x); }
KFN double math_floor(double x) { return floor(x); }
KFN float math_abs(float x) { return fabsf(x); }
KFN double math_abs(double x) { return fabs(x); }

// x ** p in double (the reference's Math.pow), with the exact shortcuts the CPU takes.
template <class T> KFN T pow_scalar(T x, double p) {
  if (p == 2) return x * x;
  if (p == 1) return x;
  if (p == 0) return T(1);
  if (p == -1) return T(1) / x;
  return T(pow(double(x), p));
}

template <class T> KFN T unary_f(int op, T x, double p0, double p1) {
  const T k = T(0.7978845608028654);  // sqrt(2 / pi)
  switch (op) {
    case NEG: return -x;
    case EXP: return math_exp(x);
    case LOG: return math_log(x);
    case SQRT: return math_sqrt(x);
    case RSQRT: return T(1) / math_sqrt(x);
    case ABS: return math_abs(x);
    case TANH: return math_tanh(x);
    case SIGMOID: return sigmoid_of(x);
    case RELU: return x > T(0) ? x : T(0);
    case SILU: return x * sigmoid_of(x);
    // 0.5 (1 + tanh(u)) = sigmoid(2u) and 1 + erf(z) = erfc(-z): no cancellation for x < 0
    case GELU_TANH: return x * sigmoid_of(T(2) * k * (x + T(0.044715) * x * x * x));
    case GELU_ERF: return T(0.5) * x * math_erfc(x * T(-0.7071067811865476));
    case SIN: return math_sin(x);
    case COS: return math_cos(x);
    case FLOOR: return math_floor(x);
    case SIGN: return x > T(0) ? T(1) : x < T(0) ? T(-1) : x;
    case RECIPROCAL: return T(1) / x;
    case POW_SCALAR: return pow_scalar(x, p0);
    default: {  // CLAMP: NaN passes through
      T lo = T(p0), hi = T(p1);
      T r = x < lo ? lo : x;
      return r > hi ? hi : r;
    }
  }
}

// df/dx (0 where the function is flat or not differentiable), as math.ts writes it.
template <class T> KFN T unary_df(int op, T x, double p0, double p1) {
  const T k = T(0.7978845608028654);
  switch (op) {
    case NEG: return T(-1);
    case EXP: return math_exp(x);
    case LOG: return T(1) / x;
    case SQRT: return T(0.5) / math_sqrt(x);
    case RSQRT: return T(-0.5) / (x * math_sqrt(x));
    case ABS: return x > T(0) ? T(1) : x < T(0) ? T(-1) : x;
    case TANH: { T t = math_tanh(x); return T(1) - t * t; }
    case SIGMOID: { T s = sigmoid_of(x); return s * (T(1) - s); }
    case RELU: return x > T(0) ? T(1) : T(0);
    case SILU: { T s = sigmoid_of(x); return s * (T(1) + x * (T(1) - s)); }
    case GELU_TANH: {  // with s = sigmoid(2u) = 0.5 (1 + tanh u): 0.5 (1 - tanh^2 u) = 2 s (1 - s)
      T s = sigmoid_of(T(2) * k * (x + T(0.044715) * x * x * x));
      return s + T(2) * x * s * (T(1) - s) * k * (T(1) + T(3 * 0.044715) * x * x);
    }
    case GELU_ERF:
      return T(0.5) * math_erfc(x * T(-0.7071067811865476)) + x * math_exp(T(-0.5) * x * x) * T(0.3989422804014327);
    case SIN: return math_cos(x);
    case COS: return -math_sin(x);
    case FLOOR: case SIGN: return T(0);
    case RECIPROCAL: return T(-1) / (x * x);
    case POW_SCALAR: return p0 == 0 ? T(0) : T(p0 * pow(double(x), p0 - 1));
    default: return x >= T(p0) && x <= T(p1) ? T(1) : T(0);  // CLAMP
  }
}

// Integer neg/abs/sign/clamp in int64, stored wrapping (bool as x != 0); clamp bounds in double.
template <class T> KFN T unary_int(int op, T xv, double lo, double hi, bool is_bool) {
  i64 v = i64(xv), r;
  if (op == NEG) r = i64(u64(0) - u64(v));
  else if (op == ABS) r = v < 0 ? i64(u64(0) - u64(v)) : v;
  else if (op == SIGN) r = (v > 0) - (v < 0);
  else {
    double d = double(v) < lo ? lo : double(v);
    d = d > hi ? hi : d;
    r = (d == d && d < 9e18 && d > -9e18) ? i64(d) : 0;
  }
  return is_bool ? T(r != 0) : T(r);
}

#define KST_UNARY_FLOAT(sfx, T)                                                                            \
  KERNEL(unary_##sfx, (i32 op, const T* x, Strided xs, T* out, i64 n, double p0, double p1)) {              \
    KST_FOR(i, n) out[i] = unary_f<T>(op, x[offset_of(xs, i)], p0, p1);                                    \
  }                                                                                                       \
  KERNEL(unary_grad_##sfx, (i32 op, const T* x, Strided xs, const T* dy, Strided gs, T* dx, i64 n, double p0, double p1)) { \
    KST_FOR(i, n) dx[i] = dy[offset_of(gs, i)] * unary_df<T>(op, x[offset_of(xs, i)], p0, p1);             \
  }
KST_UNARY_FLOAT(f32, float)
KST_UNARY_FLOAT(f64, double)

// Half storage: the float32 formulas above on the upcast values, rounded once when stored, so the
// result is the float32 kernel's result cast to the half type (bit for bit).
#define KST_UNARY_HALF(sfx, T)                                                                             \
  KERNEL(unary_##sfx, (i32 op, const T* x, Strided xs, T* out, i64 n, double p0, double p1)) {              \
    KST_FOR(i, n) out[i] = from_float<T>(unary_f<float>(op, to_float(x[offset_of(xs, i)]), p0, p1));         \
  }                                                                                                       \
  KERNEL(unary_grad_##sfx, (i32 op, const T* x, Strided xs, const T* dy, Strided gs, T* dx, i64 n, double p0, double p1)) { \
    KST_FOR(i, n) dx[i] = from_float<T>(to_float(dy[offset_of(gs, i)]) * unary_df<float>(op, to_float(x[offset_of(xs, i)]), p0, p1)); \
  }
KST_UNARY_HALF(bf16, bf16)
KST_UNARY_HALF(f16, f16)

#define KST_UNARY_INT(sfx, T, B)                                                                  \
  KERNEL(unary_##sfx, (i32 op, const T* x, Strided xs, T* out, i64 n, double p0, double p1)) {     \
    KST_FOR(i, n) out[i] = unary_int<T>(op, x[offset_of(xs, i)], p0, p1, B);                      \
  }
KST_UNARY_INT(i32, i32, false)
KST_UNARY_INT(i64, i64, false)
KST_UNARY_INT(i8, i8, false)
KST_UNARY_INT(u8, u8, false)
KST_UNARY_INT(bool, u8, true)

// ---------------------------------------------------------------- binary

template <class T> struct IsInt { static const bool value = false; };
template <> struct IsInt<i32> { static const bool value = true; };
template <> struct IsInt<i64> { static const bool value = true; };

template <class T> struct UnsignedOf;
template <> struct UnsignedOf<i32> { typedef u32 type; };
template <> struct UnsignedOf<i64> { typedef u64 type; };
template <> struct UnsignedOf<float> { typedef float type; };
template <> struct UnsignedOf<double> { typedef double type; };

template <class T> KFN T arith_int(int op, T a, T b) {
  typedef typename UnsignedOf<T>::type U;
  switch (op) {
    case ADD: return T(U(a) + U(b));
    case SUB: return T(U(a) - U(b));
    case MUL: return T(U(a) * U(b));
    case DIV: return b == 0 ? T(0) : b == T(-1) ? T(U(0) - U(a)) : T(a / b);
    case POW: {
      if (b < 0) return a == 1 ? T(1) : a == T(-1) ? ((b & 1) ? T(-1) : T(1)) : T(0);
      U r = 1, base = U(a);
      for (u64 e = u64(b); e; e >>= 1) {
        if (e & 1) r *= base;
        base *= base;
      }
      return T(r);
    }
    case MAXIMUM: return a > b ? a : b;
    default: return a < b ? a : b;  // MINIMUM
  }
}

template <class T> KFN T arith_float(int op, T a, T b) {
  switch (op) {
    case ADD: return a + b;
    case SUB: return a - b;
    case MUL: return a * b;
    case DIV: return a / b;
    case POW: return sizeof(T) == 4 && b == T(2) ? a * a : T(pow(double(a), double(b)));
    case MAXIMUM: return a != a ? a : b != b ? b : a > b ? a : b;
    default: return a != a ? a : b != b ? b : a < b ? a : b;  // MINIMUM, NaN-propagating
  }
}

template <class T> KFN bool compare(int op, T a, T b) {
  switch (op) {
    case EQ: return a == b;
    case NE: return a != b;
    case LT: return a < b;
    case LE: return a <= b;
    case GT: return a > b;
    default: return a >= b;
  }
}

#define KST_BINARY(sfx, T, ARITH)                                                                          \
  KERNEL(binary_##sfx, (i32 op, const T* a, Strided as, const T* b, Strided bs, T* out, i64 n)) {           \
    KST_FOR(i, n) out[i] = ARITH<T>(op, a[offset_of(as, i)], b[offset_of(bs, i)]);                         \
  }                                                                                                        \
  KERNEL(compare_##sfx, (i32 op, const T* a, Strided as, const T* b, Strided bs, u8* out, i64 n)) {         \
    KST_FOR(i, n) out[i] = compare<T>(op, a[offset_of(as, i)], b[offset_of(bs, i)]) ? 1 : 0;               \
  }
KST_BINARY(f32, float, arith_float)
KST_BINARY(f64, double, arith_float)
KST_BINARY(i32, i32, arith_int)
KST_BINARY(i64, i64, arith_int)

// Half storage: float32 arithmetic and comparisons on the upcast values, the result rounded once.
#define KST_BINARY_HALF(sfx, T)                                                                              \
  KERNEL(binary_##sfx, (i32 op, const T* a, Strided as, const T* b, Strided bs, T* out, i64 n)) {             \
    KST_FOR(i, n) out[i] = from_float<T>(arith_float<float>(op, to_float(a[offset_of(as, i)]), to_float(b[offset_of(bs, i)]))); \
  }                                                                                                          \
  KERNEL(compare_##sfx, (i32 op, const T* a, Strided as, const T* b, Strided bs, u8* out, i64 n)) {           \
    KST_FOR(i, n) out[i] = compare<float>(op, to_float(a[offset_of(as, i)]), to_float(b[offset_of(bs, i)])) ? 1 : 0; \
  }
KST_BINARY_HALF(bf16, bf16)
KST_BINARY_HALF(f16, f16)

// ---------------------------------------------------------------- where (any dtype: moved by element size)

template <class E> KFN void where_impl(const u8* c, const Strided& cs, const E* a, const Strided& as, const E* b, const Strided& bs, E* out, i64 n) {
  KST_FOR(i, n) out[i] = c[offset_of(cs, i)] ? a[offset_of(as, i)] : b[offset_of(bs, i)];
}
struct W1 { u8 v; };
struct W2 { u16 v; };
struct W4 { u32 v; };
struct W8 { u64 v; };
#define KST_WHERE(bytes, E) \
  KERNEL(where_b##bytes, (const u8* c, Strided cs, const E* a, Strided as, const E* b, Strided bs, E* out, i64 n)) { where_impl(c, cs, a, as, b, bs, out, n); }
KST_WHERE(1, W1)
KST_WHERE(2, W2)
KST_WHERE(4, W4)
KST_WHERE(8, W8)
