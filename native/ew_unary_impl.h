// Unary ops and their derivatives over contiguous spans, per ISA (see ew_isa.h): float32 in
// vectors (simd_math.h), float64 as the reference's formulas (src/backend/ref/math.ts) in scalar
// loops the compiler vectorizes where it can, int32/int64 for neg, abs, sign and clamp.
// Included by the ew_<isa>.cc files inside their namespace, after simd_math.h.

// Stores of a vector at p: plain, or non-temporal (p aligned to the vector size) for large
// outputs, which then skip the read-for-ownership of their cache lines.
template <bool NT, class V, class T>
inline void vput(T* p, V v) {
  if (NT) vstream(p, v);  // p is vector-aligned here
  else vstore(p, v);
}

// Elements before the first vector-aligned one of p (all of n when that is fewer).
template <class T>
inline int64_t head_count(const T* p, int64_t n) {
  int64_t h = int64_t((-reinterpret_cast<uintptr_t>(p)) & (KESTREL_VBYTES - 1)) / int64_t(sizeof(T));
  return h < n ? h : n;
}

// y = f(x) over n floats; a partial vector runs through a zero-padded copy, so it takes the same
// code. NT: non-temporal stores from the first aligned element on, then a fence.
template <bool NT, class F>
inline void vmap1_impl(const float* x, float* y, int64_t n, F f) {
  auto part = [&](int64_t i, int64_t m) {
    float tx[WF] = {}, ty[WF];
    __builtin_memcpy(tx, x + i, m * sizeof(float));
    vstore(ty, f(vload<vf>(tx)));
    __builtin_memcpy(y + i, ty, m * sizeof(float));
  };
  int64_t i = 0;
  if (NT && (i = head_count(y, n)) > 0) part(0, i);
  for (; i + WF <= n; i += WF) vput<NT>(y + i, f(vload<vf>(x + i)));
  if (i < n) part(i, n - i);
  if (NT) _mm_sfence();
}
template <class F>
inline void vmap1(const float* x, float* y, int64_t n, bool nt, F f) {
  if (nt) vmap1_impl<true>(x, y, n, f);
  else vmap1_impl<false>(x, y, n, f);
}

// dx = g(x, dy) over n floats.
template <bool NT, class G>
inline void vmap2_impl(const float* x, const float* dy, float* dx, int64_t n, G g) {
  auto part = [&](int64_t i, int64_t m) {
    float tx[WF] = {}, tg[WF] = {}, ty[WF];
    __builtin_memcpy(tx, x + i, m * sizeof(float));
    __builtin_memcpy(tg, dy + i, m * sizeof(float));
    vstore(ty, g(vload<vf>(tx), vload<vf>(tg)));
    __builtin_memcpy(dx + i, ty, m * sizeof(float));
  };
  int64_t i = 0;
  if (NT && (i = head_count(dx, n)) > 0) part(0, i);
  for (; i + WF <= n; i += WF) vput<NT>(dx + i, g(vload<vf>(x + i), vload<vf>(dy + i)));
  if (i < n) part(i, n - i);
  if (NT) _mm_sfence();
}
template <class G>
inline void vmap2(const float* x, const float* dy, float* dx, int64_t n, bool nt, G g) {
  if (nt) vmap2_impl<true>(x, dy, dx, n, g);
  else vmap2_impl<false>(x, dy, dx, n, g);
}

// ---------------------------------------------------------------- float32 forward

#define KF_UNARY(NAME, EXPR)                                                                   \
  static void f32_##NAME(const void* xp, void* yp, int64_t n, double p0, double p1, bool nt) {         \
    const vf P0 = splat(float(p0)), P1 = splat(float(p1));                                     \
    (void)P0; (void)P1;                                                                        \
    vmap1(static_cast<const float*>(xp), static_cast<float*>(yp), n, nt, [&](vf x) -> vf { return EXPR; }); \
  }

KF_UNARY(neg, -x)
KF_UNARY(exp, vexp(x))
KF_UNARY(log, vlog(x))
KF_UNARY(sqrt, vsqrt(x))
KF_UNARY(rsqrt, 1.0f / vsqrt(x))
KF_UNARY(abs, vabs(x))
KF_UNARY(tanh, vtanh(x))
KF_UNARY(sigmoid, vsigmoid(x, nullptr))
KF_UNARY(relu, vselect(x > 0.0f, x, splat(0.0f)))
KF_UNARY(silu, x / (1.0f + vexp(-x)))
KF_UNARY(gelu_tanh, vgelu_tanh(x, nullptr))
KF_UNARY(gelu_erf, vgelu_erf(x, nullptr))
KF_UNARY(floor, vfloor(x))
KF_UNARY(sign, vselect(x > 0.0f, splat(1.0f), vselect(x < 0.0f, splat(-1.0f), x)))
KF_UNARY(reciprocal, 1.0f / x)
KF_UNARY(clamp, ({ vf r = vselect(x < P0, P0, x); vselect(r > P1, P1, r); }))
#undef KF_UNARY

static void f32_sin(const void* xp, void* yp, int64_t n, double, double, bool) {
  const float* x = static_cast<const float*>(xp);
  float* y = static_cast<float*>(yp);
  for (int64_t i = 0; i < n; i++) y[i] = std::sin(x[i]);
}
static void f32_cos(const void* xp, void* yp, int64_t n, double, double, bool) {
  const float* x = static_cast<const float*>(xp);
  float* y = static_cast<float*>(yp);
  for (int64_t i = 0; i < n; i++) y[i] = std::cos(x[i]);
}
// x ** p: exact shortcuts for p in {0, 1, 2, -1, 0.5}, else pow in double (as the reference).
static void f32_pow_scalar(const void* xp, void* yp, int64_t n, double p, double, bool nt) {
  const float* x = static_cast<const float*>(xp);
  float* y = static_cast<float*>(yp);
  if (p == 2) vmap1(x, y, n, nt, [&](vf v) { return v * v; });
  else if (p == 1) vmap1(x, y, n, nt, [&](vf v) { return v; });
  else if (p == 0) vmap1(x, y, n, nt, [&](vf) { return splat(1.0f); });
  else if (p == -1) vmap1(x, y, n, nt, [&](vf v) { return 1.0f / v; });
  else if (p == 0.5)  // pow(-0, .5) = +0 and pow(-inf, .5) = +inf, unlike sqrt
    vmap1(x, y, n, nt, [&](vf v) { return vselect(v == -__builtin_inff(), -v, vsqrt(v) + 0.0f); });
  else
    for (int64_t i = 0; i < n; i++) y[i] = float(std::pow(double(x[i]), p));
}

// ---------------------------------------------------------------- float32 derivatives

#define KF_GRAD(NAME, EXPR)                                                                    \
  static void f32g_##NAME(const void* xp, const void* gp, void* dp, int64_t n, double p0, double p1, bool nt) { \
    const vf P0 = splat(float(p0)), P1 = splat(float(p1));                                     \
    (void)P0; (void)P1;                                                                        \
    vmap2(static_cast<const float*>(xp), static_cast<const float*>(gp), static_cast<float*>(dp), n, nt, \
          [&](vf x, vf g) -> vf { return EXPR; });                                             \
  }

KF_GRAD(neg, -g)
KF_GRAD(exp, g * vexp(x))
KF_GRAD(log, g * (1.0f / x))
KF_GRAD(sqrt, g * (0.5f / vsqrt(x)))
KF_GRAD(rsqrt, g * (-0.5f / (x * vsqrt(x))))
KF_GRAD(abs, g * vselect(x > 0.0f, splat(1.0f), vselect(x < 0.0f, splat(-1.0f), x)))
// 1 - tanh^2 = 4e / (1 + e)^2 with e = exp(-2|x|): no cancellation where tanh is near 1.
KF_GRAD(tanh, ({ vf e = vexp(-2.0f * vabs(x)); vf d = 1.0f + e; g * (4.0f * e / (d * d)); }))
KF_GRAD(sigmoid, ({ vf om; vf s = vsigmoid(x, &om); g * (s * om); }))
KF_GRAD(relu, g * vselect(x > 0.0f, splat(1.0f), splat(0.0f)))
KF_GRAD(silu, ({ vf om; vf s = vsigmoid(x, &om); g * (s * vfma(x, om, splat(1.0f))); }))
KF_GRAD(gelu_tanh, ({ vf d; vgelu_tanh(x, &d); g * d; }))
KF_GRAD(gelu_erf, ({ vf d; vgelu_erf(x, &d); g * d; }))
KF_GRAD(floor, g * 0.0f)
KF_GRAD(sign, g * 0.0f)
KF_GRAD(reciprocal, g * (-1.0f / (x * x)))
KF_GRAD(clamp, g * vselect((x >= P0) & (x <= P1), splat(1.0f), splat(0.0f)))
#undef KF_GRAD

static void f32g_sin(const void* xp, const void* gp, void* dp, int64_t n, double, double, bool) {
  const float *x = static_cast<const float*>(xp), *g = static_cast<const float*>(gp);
  float* d = static_cast<float*>(dp);
  for (int64_t i = 0; i < n; i++) d[i] = g[i] * std::cos(x[i]);
}
static void f32g_cos(const void* xp, const void* gp, void* dp, int64_t n, double, double, bool) {
  const float *x = static_cast<const float*>(xp), *g = static_cast<const float*>(gp);
  float* d = static_cast<float*>(dp);
  for (int64_t i = 0; i < n; i++) d[i] = g[i] * -std::sin(x[i]);
}
static void f32g_pow_scalar(const void* xp, const void* gp, void* dp, int64_t n, double p, double, bool nt) {
  const float *x = static_cast<const float*>(xp), *g = static_cast<const float*>(gp);
  float* d = static_cast<float*>(dp);
  if (p == 2) vmap2(x, g, d, n, nt, [&](vf v, vf w) { return w * (2.0f * v); });
  else if (p == 1) vmap2(x, g, d, n, nt, [&](vf, vf w) { return w * 1.0f; });
  else if (p == 0) vmap2(x, g, d, n, nt, [&](vf, vf w) { return w * 0.0f; });
  else
    for (int64_t i = 0; i < n; i++) d[i] = g[i] * float(p * std::pow(double(x[i]), p - 1));
}

// ---------------------------------------------------------------- float64 (the reference's formulas)

static inline double sigmoid64(double x) { return 1 / (1 + std::exp(-x)); }
static inline double sign64(double x) { return x > 0 ? 1.0 : x < 0 ? -1.0 : x; }
constexpr double kSqrt2OverPi64 = 0.79788456080286535588;
static inline double gelu_tanh_t(double x) { return std::tanh(kSqrt2OverPi64 * (x + 0.044715 * x * x * x)); }

#define KD_UNARY(NAME, EXPR)                                                                   \
  static void f64_##NAME(const void* xp, void* yp, int64_t n, double p0, double p1, bool) {         \
    const double* xs = static_cast<const double*>(xp);                                        \
    double* y = static_cast<double*>(yp);                                                     \
    (void)p0; (void)p1;                                                                        \
    for (int64_t i = 0; i < n; i++) { const double x = xs[i]; y[i] = (EXPR); }                 \
  }
KD_UNARY(neg, -x)
KD_UNARY(exp, std::exp(x))
KD_UNARY(log, std::log(x))
KD_UNARY(sqrt, std::sqrt(x))
KD_UNARY(rsqrt, 1 / std::sqrt(x))
KD_UNARY(abs, std::fabs(x))
KD_UNARY(tanh, std::tanh(x))
KD_UNARY(sigmoid, sigmoid64(x))
KD_UNARY(relu, x > 0 ? x : 0.0)
KD_UNARY(silu, x * sigmoid64(x))
KD_UNARY(gelu_tanh, 0.5 * x * (1 + gelu_tanh_t(x)))
KD_UNARY(gelu_erf, 0.5 * x * (1 + std::erf(x * 0.70710678118654752440)))
KD_UNARY(sin, std::sin(x))
KD_UNARY(cos, std::cos(x))
KD_UNARY(floor, std::floor(x))
KD_UNARY(sign, sign64(x))
KD_UNARY(reciprocal, 1 / x)
KD_UNARY(pow_scalar, p0 == 2 ? x * x : std::pow(x, p0))
KD_UNARY(clamp, ({ double r = x < p0 ? p0 : x; r > p1 ? p1 : r; }))
#undef KD_UNARY

#define KD_GRAD(NAME, EXPR)                                                                    \
  static void f64g_##NAME(const void* xp, const void* gp, void* dp, int64_t n, double p0, double p1, bool) { \
    const double *xs = static_cast<const double*>(xp), *g = static_cast<const double*>(gp);   \
    double* d = static_cast<double*>(dp);                                                     \
    (void)p0; (void)p1;                                                                        \
    for (int64_t i = 0; i < n; i++) { const double x = xs[i]; (void)x; d[i] = g[i] * (EXPR); }          \
  }
KD_GRAD(neg, -1.0)
KD_GRAD(exp, std::exp(x))
KD_GRAD(log, 1 / x)
KD_GRAD(sqrt, 0.5 / std::sqrt(x))
KD_GRAD(rsqrt, -0.5 / (x * std::sqrt(x)))
KD_GRAD(abs, sign64(x))
KD_GRAD(tanh, ({ double t = std::tanh(x); 1 - t * t; }))
KD_GRAD(sigmoid, ({ double s = sigmoid64(x); s * (1 - s); }))
KD_GRAD(relu, x > 0 ? 1.0 : 0.0)
KD_GRAD(silu, ({ double s = sigmoid64(x); s * (1 + x * (1 - s)); }))
KD_GRAD(gelu_tanh, ({
  double t = gelu_tanh_t(x);
  0.5 * (1 + t) + 0.5 * x * (1 - t * t) * kSqrt2OverPi64 * (1 + 3 * 0.044715 * x * x);
}))
KD_GRAD(gelu_erf, 0.5 * (1 + std::erf(x * 0.70710678118654752440)) + x * std::exp(-0.5 * x * x) * 0.39894228040143267794)
KD_GRAD(sin, std::cos(x))
KD_GRAD(cos, -std::sin(x))
KD_GRAD(floor, 0.0)
KD_GRAD(sign, 0.0)
KD_GRAD(reciprocal, -1 / (x * x))
KD_GRAD(pow_scalar, p0 == 0 ? 0.0 : p0 * std::pow(x, p0 - 1))
KD_GRAD(clamp, x >= p0 && x <= p1 ? 1.0 : 0.0)
#undef KD_GRAD

// ---------------------------------------------------------------- int32 / int64

template <class T>
static inline T int_from_double(double v) {  // trunc toward zero, NaN -> 0, saturating
  if (!(v == v)) return 0;
  if (v <= double(std::numeric_limits<T>::min())) return std::numeric_limits<T>::min();
  if (v >= double(std::numeric_limits<T>::max())) return std::numeric_limits<T>::max();
  return T(v);
}

template <class T>
struct IntUnary {
  using U = typename std::make_unsigned<T>::type;
  static void neg(const void* xp, void* yp, int64_t n, double, double, bool) {
    const T* x = static_cast<const T*>(xp);
    T* y = static_cast<T*>(yp);
    for (int64_t i = 0; i < n; i++) y[i] = T(U(0) - U(x[i]));
  }
  static void abs(const void* xp, void* yp, int64_t n, double, double, bool) {
    const T* x = static_cast<const T*>(xp);
    T* y = static_cast<T*>(yp);
    for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0 ? T(U(0) - U(x[i])) : x[i];
  }
  static void sign(const void* xp, void* yp, int64_t n, double, double, bool) {
    const T* x = static_cast<const T*>(xp);
    T* y = static_cast<T*>(yp);
    for (int64_t i = 0; i < n; i++) y[i] = T((x[i] > 0) - (x[i] < 0));
  }
  // min(max(x, lo), hi) compared in double (as the reference), x itself kept exact.
  static void clamp(const void* xp, void* yp, int64_t n, double lo, double hi, bool) {
    const T* x = static_cast<const T*>(xp);
    T* y = static_cast<T*>(yp);
    for (int64_t i = 0; i < n; i++) {
      double v = double(x[i]);
      if (v < lo) y[i] = int_from_double<T>(lo > hi ? hi : lo);
      else if (v > hi) y[i] = int_from_double<T>(hi);
      else y[i] = x[i];
    }
  }
};
