// Vectorized float32 math over GCC vector extensions, written once and compiled per ISA: an
// ISA file (ew_sse2.cc / ew_avx2.cc / ew_avx512.cc) defines KESTREL_VBYTES (16 / 32 / 64),
// switches the target with #pragma GCC target, and includes this inside its own namespace.
// exp and log follow Cephes (expf.c, logf.c: range reduction + minimax polynomial, ~1 ulp);
// tanh, sigmoid, silu and GELU are built from exp in forms that never cancel catastrophically;
// erfc uses the Chebyshev fit of Numerical Recipes' erfcc (relative error < 1.2e-7).
// Include after <immintrin.h>, inside a namespace, with KESTREL_VBYTES set.

typedef float vf __attribute__((vector_size(KESTREL_VBYTES)));
typedef int32_t vi __attribute__((vector_size(KESTREL_VBYTES)));
typedef uint32_t vu __attribute__((vector_size(KESTREL_VBYTES)));
typedef double vd __attribute__((vector_size(KESTREL_VBYTES)));
typedef int64_t vl __attribute__((vector_size(KESTREL_VBYTES)));
typedef float vfh __attribute__((vector_size(KESTREL_VBYTES / 2)));
typedef int32_t vih __attribute__((vector_size(KESTREL_VBYTES / 2)));
typedef uint16_t vhh __attribute__((vector_size(KESTREL_VBYTES / 2)));
constexpr int WF = KESTREL_VBYTES / 4;  // float lanes
constexpr int WD = KESTREL_VBYTES / 8;  // double lanes

template <class V, class T>
inline V vload(const T* p) {
  V v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
template <class V, class T>
inline void vstore(T* p, V v) {
  __builtin_memcpy(p, &v, sizeof v);
}
inline vf splat(float x) { return vf{} + x; }
inline vd splatd(double x) { return vd{} + x; }

#if KESTREL_VBYTES == 64
inline vf vfma(vf a, vf b, vf c) { return (vf)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c); }
// The masked forms: GCC 12 warns that the unmasked ones read an uninitialized register.
inline vf vsqrt(vf a) { return (vf)_mm512_mask_sqrt_ps((__m512)a, (__mmask16)0xffff, (__m512)a); }
inline vd vsqrtd(vd a) { return (vd)_mm512_mask_sqrt_pd((__m512d)a, (__mmask8)0xff, (__m512d)a); }
inline void vstream(float* p, vf v) { _mm512_stream_ps(p, (__m512)v); }
inline void vstream(double* p, vd v) { _mm512_stream_pd(p, (__m512d)v); }
constexpr bool kHasFma = true;
#elif KESTREL_VBYTES == 32
inline vf vfma(vf a, vf b, vf c) { return (vf)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c); }
inline vf vsqrt(vf a) { return (vf)_mm256_sqrt_ps((__m256)a); }
inline vd vsqrtd(vd a) { return (vd)_mm256_sqrt_pd((__m256d)a); }
inline void vstream(float* p, vf v) { _mm256_stream_ps(p, (__m256)v); }
inline void vstream(double* p, vd v) { _mm256_stream_pd(p, (__m256d)v); }
constexpr bool kHasFma = true;
#else
inline vf vfma(vf a, vf b, vf c) { return a * b + c; }
inline vf vsqrt(vf a) { return (vf)_mm_sqrt_ps((__m128)a); }
inline vd vsqrtd(vd a) { return (vd)_mm_sqrt_pd((__m128d)a); }
inline void vstream(float* p, vf v) { _mm_stream_ps(p, (__m128)v); }
inline void vstream(double* p, vd v) { _mm_stream_pd(p, (__m128d)v); }
constexpr bool kHasFma = false;
#endif

inline vf vabs(vf x) { return (vf)((vi)x & 0x7fffffff); }
inline vi visnan(vf x) { return x != x; }
inline vf vselect(vi m, vf a, vf b) { return m ? a : b; }

// Exact product a*b = hi + lo (FMA, or Dekker's splitting without it).
inline vf two_prod(vf a, vf b, vf* lo) {
  vf hi = a * b;
  if (kHasFma) {
    *lo = vfma(a, b, -hi);
  } else {
    vf ca = a * 4097.0f, cb = b * 4097.0f;
    vf ah = ca - (ca - a), al = a - ah, bh = cb - (cb - b), bl = b - bh;
    *lo = ((ah * bh - hi) + ah * bl + al * bh) + al * bl;
  }
  return hi;
}

// floor for |x| < 2^23 via truncation; larger magnitudes (and NaN, inf) are already integral.
inline vf vfloor(vf x) {
  vi big = vabs(x) >= 8388608.0f;
  vi safe = big | visnan(x);
  vf xs = vselect(safe, splat(0.0f), x);
  vf t = __builtin_convertvector(__builtin_convertvector(xs, vi), vf);
  t = vselect(t > xs, t - 1.0f, t);
  t = (vf)((vi)t | ((vi)xs & (int32_t)0x80000000));  // floor(-0) = -0
  return vselect(safe, x, t);
}

// True when every lane of a is below c (NaN lanes are not).
inline bool all_below(vf a, float c) {
#if KESTREL_VBYTES == 64
  return _mm512_cmp_ps_mask((__m512)a, _mm512_set1_ps(c), _CMP_LT_OQ) == 0xffff;
#elif KESTREL_VBYTES == 32
  return _mm256_movemask_ps(_mm256_cmp_ps((__m256)a, _mm256_set1_ps(c), _CMP_LT_OQ)) == 0xff;
#else
  return _mm_movemask_ps(_mm_cmplt_ps((__m128)a, _mm_set1_ps(c))) == 0xf;
#endif
}

// e^x (Cephes expf): x = n ln2 + r, |r| <= ln2/2, e^r = 1 + r + r^2 Q(r) with Cephes' degree-5
// Q evaluated by Estrin's scheme, then 2^n. These loops are bound by how many instructions of
// their long dependency chains the scheduler holds, so the common case (|x| < 87: a normal
// result) takes the shortest path: one 2^n, or vscalefps on AVX-512. A vector with a lane
// outside it (overflow to inf above 88.8, subnormal results, 0 below -104, inf, NaN) is redone
// with 2^n built in two halves and explicit fix-ups.
inline vf vexp(vf x) {
  const vf magic = splat(12582912.0f);  // 1.5 * 2^23: adding it rounds to an integer
  vf t = vfma(x, splat(1.44269504088896341f), magic);
  vf n = t - magic;
  vf r = vfma(n, splat(-0.693359375f), x);
  r = vfma(n, splat(2.12194440e-4f), r);
  vf r2 = r * r;
  vf a = vfma(r, splat(1.6666665459e-1f), splat(5.0000001201e-1f));
  vf b = vfma(r, splat(8.3334519073e-3f), splat(4.1665795894e-2f));
  vf c = vfma(r, splat(1.9875691500e-4f), splat(1.3981999507e-3f));
  vf q = vfma(r2 * r2, c, vfma(r2, b, a));
  vf y = vfma(r2, q, r) + 1.0f;
#if KESTREL_VBYTES == 64
  y = (vf)_mm512_mask_scalef_ps((__m512)y, (__mmask16)0xffff, (__m512)y, (__m512)n);
  if (__builtin_expect(all_below(vabs(x), 87.0f), 1)) return y;
#else
  vi ni = (vi)t - (vi)magic;
  if (__builtin_expect(all_below(vabs(x), 87.0f), 1)) return y * (vf)((ni + 127) << 23);
  vi n1 = ni >> 1, n2 = ni - n1;
  y = y * (vf)((n1 + 127) << 23) * (vf)((n2 + 127) << 23);
#endif
  y = vselect(x > 88.8f, splat(__builtin_inff()), y);
  y = vselect(x < -104.0f, splat(0.0f), y);
  return vselect(visnan(x), x, y);
}

// ln x (Cephes logf): x = m 2^e with m in [sqrt(1/2), sqrt(2)), ln(m) by a degree-9 polynomial.
inline vf vlog(vf x) {
  vi sub = (x < 1.17549435e-38f) & (x > 0.0f);
  vf xs = vselect(sub, x * 8388608.0f, x);
  vi bits = (vi)xs;
  vi e = ((bits >> 23) & 0xff) - 126 - (sub & 23);
  vf m = (vf)((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
  vi small = m < 0.707106781186547524f;
  e = e + small;  // small is -1 where true
  m = vselect(small, m + m - 1.0f, m - 1.0f);
  vf z = m * m;
  vf y = splat(7.0376836292e-2f);
  y = vfma(y, m, splat(-1.1514610310e-1f));
  y = vfma(y, m, splat(1.1676998740e-1f));
  y = vfma(y, m, splat(-1.2420140846e-1f));
  y = vfma(y, m, splat(1.4249322787e-1f));
  y = vfma(y, m, splat(-1.6668057665e-1f));
  y = vfma(y, m, splat(2.0000714765e-1f));
  y = vfma(y, m, splat(-2.4999993993e-1f));
  y = vfma(y, m, splat(3.3333331174e-1f));
  y = y * m * z;
  vf fe = __builtin_convertvector(e, vf);
  y = vfma(fe, splat(-2.12194440e-4f), y);
  y = vfma(z, splat(-0.5f), y);
  vf r = vfma(fe, splat(0.693359375f), m + y);
  r = vselect(x == 0.0f, splat(-__builtin_inff()), r);
  r = vselect(x < 0.0f, splat(__builtin_nanf("")), r);
  r = vselect(x == __builtin_inff(), x, r);
  return vselect(visnan(x), x, r);
}

// tanh (Cephes tanhf below 0.625, else (1 - e)/(1 + e) with e = exp(-2|x|), which never cancels).
inline vf vtanh(vf x) {
  vf ax = vabs(x);
  vf s = x * x;
  vf p = splat(-5.70498872745e-3f);
  p = vfma(p, s, splat(2.06390887954e-2f));
  p = vfma(p, s, splat(-5.37397155531e-2f));
  p = vfma(p, s, splat(1.33314422036e-1f));
  p = vfma(p, s, splat(-3.33332819422e-1f));
  vf small = vfma(p * s, x, x);
  vf e = vexp(-2.0f * ax);
  vf big = (1.0f - e) / (1.0f + e);
  big = (vf)((vi)big | ((vi)x & (int32_t)0x80000000));
  return vselect(ax >= 0.625f, big, small);
}

// sigmoid with both s and 1 - s accurate: e = exp(-x), s = 1/(1+e), 1-s = e*s (e <= 1) or 1 - s.
inline vf vsigmoid(vf x, vf* one_minus) {
  vf e = vexp(-x);
  vf s = 1.0f / (1.0f + e);
  if (one_minus) *one_minus = vselect(x >= 0.0f, e * s, 1.0f - s);
  return s;
}

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluK = 0.044715f;

// gelu_tanh(x) = 0.5 x (1 + tanh(u)) = x sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3).
inline vf vgelu_tanh(vf x, vf* grad) {
  vf x2 = x * x;
  vf u = x * vfma(splat(kSqrt2OverPi * kGeluK), x2, splat(kSqrt2OverPi));
  vf oms;
  if (!grad) return x / (1.0f + vexp(-2.0f * u));
  vf s = vsigmoid(2.0f * u, &oms);
  {  // d/dx = s + 2 x s (1-s) sqrt(2/pi) (1 + 3k x^2)  (0.5 (1 - t^2) = 2 s (1-s))
    vf xc = vselect(vabs(x) > 20.0f, splat(0.0f), x);  // the second term is 0 out there
    vf du = kSqrt2OverPi * vfma(splat(3.0f * kGeluK), xc * xc, splat(1.0f));
    *grad = vfma(2.0f * xc * s * oms, du, s);
  }
  return x * s;
}

// Phi(x) = 0.5 erfc(-x/sqrt2) for gelu_erf, from erfc(z) = t exp(-z^2 + P(t)), t = 1/(1 + z/2)
// (Numerical Recipes' erfcc), with z^2 = x^2/2 split exactly into hi + lo so that the tail keeps
// its relative accuracy. Also returns the density phi(x) = exp(-x^2/2)/sqrt(2 pi).
inline vf vnormal_cdf(vf x, vf* pdf) {
  vf lo;
  vf hi = two_prod(x, x, &lo);
  vi huge = hi > 200.0f;  // exp(-100) underflows anyway (and hi may be inf)
  hi = vselect(huge, splat(200.0f), hi);
  lo = vselect(huge, splat(0.0f), lo);
  vf g = vexp(-0.5f * hi) * (1.0f - 0.5f * lo);  // exp(-x^2/2)
  vf z = vabs(x) * 0.70710678118654752f;
  vf t = 1.0f / vfma(z, splat(0.5f), splat(1.0f));
  // P(t) = sum c_i t^i, i <= 9, by Estrin's scheme (depth 4 instead of Horner's 9).
  vf t2 = t * t, t4 = t2 * t2, t8 = t4 * t4;
  vf p01 = vfma(t, splat(1.00002368f), splat(-1.26551223f)), p23 = vfma(t, splat(0.09678418f), splat(0.37409196f));
  vf p45 = vfma(t, splat(0.27886807f), splat(-0.18628806f)), p67 = vfma(t, splat(1.48851587f), splat(-1.13520398f));
  vf p89 = vfma(t, splat(0.17087277f), splat(-0.82215223f));
  vf p = vfma(t8, p89, vfma(t4, vfma(t2, p67, p45), vfma(t2, p23, p01)));
  vf q = 0.5f * t * g * vexp(p);  // 0.5 erfc(|x|/sqrt2)
  if (pdf) *pdf = g * 0.3989422804014327f;
  vf r = vselect(x >= 0.0f, 1.0f - q, q);
  return vselect(visnan(x), x, r);
}

inline vf vgelu_erf(vf x, vf* grad) {
  vf pdf;
  vf phi = vnormal_cdf(x, grad ? &pdf : nullptr);
  if (grad) *grad = vfma(x, pdf, phi);
  return x * phi;
}
