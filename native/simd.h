// The SIMD vocabulary of the fused kernels (nn.cc, attention.cc): one struct per ISA with the
// same static functions, so a kernel body written once over `V` compiles three times. The
// bodies (*.inc) are included inside `#pragma GCC target` regions and dispatched at run time
// from cpu_features() (KESTREL_SIMD=avx2|scalar forces a lower level); never -march=native.
// exp and tanh follow Cephes' expf / tanhf (range reduction + minimax polynomial, ~2 ulp).
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "kernel_api.h"

// GCC 12 warns that the AVX-512 reduction/masked-load intrinsics read an uninitialized __Y
// (their _mm*_undefined_*() pass-through); a known false positive, GCC PR 105593.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace kestrel {
namespace simd {

constexpr float kLog2e = 1.44269504088896341f;
constexpr float kExpHi = 88.0f;                // exp clamps here (2^127 range), still finite
constexpr float kExpLo = -88.3762626647949f;
constexpr float kExpFlush = -87.33654475f;     // below: the result would be subnormal; return 0
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kExpP0 = 1.9875691500e-4f, kExpP1 = 1.3981999507e-3f, kExpP2 = 8.3334519073e-3f,
                kExpP3 = 4.1665795894e-2f, kExpP4 = 1.6666665459e-1f, kExpP5 = 5.0000001201e-1f;
constexpr float kTanhP0 = -5.70498872745e-3f, kTanhP1 = 2.06390887954e-2f, kTanhP2 = -5.37397155531e-2f,
                kTanhP3 = 1.33314422036e-1f, kTanhP4 = -3.33332819422e-1f;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Asks for the cache lines of row[0, n) (a hint: it reads nothing, and is never an out-of-bounds access).
// The decode attention kernels ask for each key row this many rows before they score it.
constexpr int64_t kKeyPrefetchRows = 8;
template <_mm_hint Hint>
inline void prefetch_floats(const float* row, int64_t n) {
  for (int64_t c = 0; c < n; c += 16) _mm_prefetch(reinterpret_cast<const char*>(row + c), Hint);
}
// The same for a row of n bfloat16 values.
template <_mm_hint Hint>
inline void prefetch_floats(const uint16_t* row, int64_t n) {
  for (int64_t c = 0; c < n; c += 32) _mm_prefetch(reinterpret_cast<const char*>(row + c), Hint);
}

// The first n (< 2 W) bfloat16 values at p, zeros after, in a zeroed array: the tail of a row that
// a masked load would take (AVX2 has no 16-bit masked load).
template <int W>
struct Bf16Tail {
  alignas(64) uint16_t v[W] = {};
  Bf16Tail(const uint16_t* p, int n) {
    for (int i = 0; i < n && i < W; i++) v[i] = p[i];
  }
};

// Which body to run: 2 = AVX-512, 1 = AVX2+FMA, 0 = scalar.
inline int level() {
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx2 && f.fma) return 2;
  if (f.avx2 && f.fma) return 1;
  return 0;
}

// ------------------------------------------------------------------ scalar (the fallback)

struct Scalar {
  using R = float;
  using M = int;  // lanes active: 0 or 1
  static constexpr int W = 1;
  static constexpr int MR = 4;  // micro-tile rows of the tile GEMM (attention.inc)
  static R zero() { return 0.0f; }
  static R set1(float x) { return x; }
  static R load(const float* p) { return *p; }
  // bfloat16 widened (exact): the value's bits in the top half of a float
  static R load_bf16(const uint16_t* p) { return bf16_to_f32(*p); }
  static R loadm_bf16(const uint16_t* p, M m) { return m ? bf16_to_f32(*p) : 0.0f; }
  static void store(float* p, R r) { *p = r; }
  static M mask(int64_t n) { return n > 0 ? 1 : 0; }
  static R loadm(const float* p, M m) { return m ? *p : 0.0f; }
  static R loadm_or(const float* p, M m, float fill) { return m ? *p : fill; }
  static void storem(float* p, R r, M m) { if (m) *p = r; }
  static R add(R a, R b) { return a + b; }
  static R sub(R a, R b) { return a - b; }
  static R mul(R a, R b) { return a * b; }
  static R div(R a, R b) { return a / b; }
  static R fma(R a, R b, R c) { return a * b + c; }
  static R max(R a, R b) { return a > b ? a : b; }
  static R min(R a, R b) { return a < b ? a : b; }
  static float hsum(R r) { return r; }
  static float hmax(R r) { return r; }
  static R exp(R x) { return std::exp(x); }
  static R tanh(R x) { return std::tanh(x); }
  // x == -inf ? y : x (lane-wise)
  static R neginf_to(R x, R y) { return x == kNegInf ? y : x; }
};

// ------------------------------------------------------------------ AVX2 + FMA

#pragma GCC push_options
#pragma GCC target("avx2,fma")
struct Avx2 {
  using R = __m256;
  using M = __m256i;
  static constexpr int W = 8;
  static constexpr int MR = 6;  // 6 x 16 tile: 12 accumulators + 2 B vectors + 1 broadcast
  static R zero() { return _mm256_setzero_ps(); }
  static R set1(float x) { return _mm256_set1_ps(x); }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, R r) { _mm256_storeu_ps(p, r); }
  static M mask(int64_t n) {
    int k = n < 0 ? 0 : n > W ? W : int(n);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static R loadm(const float* p, M m) { return _mm256_maskload_ps(p, m); }
  static R loadm_or(const float* p, M m, float fill) {
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
  }
  static R load_bf16(const uint16_t* p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
  }
  // mask(n)'s lanes are a prefix: its count says how many values to read
  static R loadm_bf16(const uint16_t* p, M m) {
    const int n = __builtin_popcount(unsigned(_mm256_movemask_ps(_mm256_castsi256_ps(m))));
    return n == W ? load_bf16(p) : load_bf16(Bf16Tail<W>(p, n).v);
  }
  static void storem(float* p, R r, M m) { _mm256_maskstore_ps(p, m, r); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R sub(R a, R b) { return _mm256_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm256_mul_ps(a, b); }
  static R div(R a, R b) { return _mm256_div_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static R max(R a, R b) { return _mm256_max_ps(a, b); }
  static R min(R a, R b) { return _mm256_min_ps(a, b); }
  static float hsum(R r) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static float hmax(R r) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static R exp(R x) {
    // max/min with x second so that a NaN x passes through
    R xc = _mm256_min_ps(_mm256_set1_ps(kExpHi), _mm256_max_ps(_mm256_set1_ps(kExpLo), x));
    R fx = _mm256_floor_ps(_mm256_fmadd_ps(xc, _mm256_set1_ps(kLog2e), _mm256_set1_ps(0.5f)));
    R r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(kLn2Hi), xc);
    r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(kLn2Lo), r);
    R z = _mm256_mul_ps(r, r);
    R y = _mm256_set1_ps(kExpP0);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP1));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP4));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kExpP5));
    y = _mm256_fmadd_ps(y, z, r);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    R keep = _mm256_cmp_ps(x, _mm256_set1_ps(kExpFlush), _CMP_NLT_UQ);  // x >= flush or NaN
    return _mm256_and_ps(y, keep);
  }
  static R tanh(R x) {
    R sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    R ax = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    // |x| >= 0.625: 1 - 2 / (exp(2|x|) + 1)
    R big = _mm256_sub_ps(_mm256_set1_ps(1.0f),
                          _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(exp(_mm256_add_ps(ax, ax)), _mm256_set1_ps(1.0f))));
    // |x| < 0.625: x + x z P(z), z = x^2
    R z = _mm256_mul_ps(ax, ax);
    R p = _mm256_set1_ps(kTanhP0);
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(kTanhP1));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(kTanhP2));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(kTanhP3));
    p = _mm256_fmadd_ps(p, z, _mm256_set1_ps(kTanhP4));
    R small = _mm256_fmadd_ps(_mm256_mul_ps(p, z), ax, ax);
    R r = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_LT_OQ));
    return _mm256_or_ps(r, sign);
  }
  static R neginf_to(R x, R y) {
    return _mm256_blendv_ps(x, y, _mm256_cmp_ps(x, _mm256_set1_ps(kNegInf), _CMP_EQ_OQ));
  }
};
#pragma GCC pop_options

// ------------------------------------------------------------------ AVX-512

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
struct Avx512 {
  using R = __m512;
  using M = __mmask16;
  static constexpr int W = 16;
  static constexpr int MR = 8;  // 8 x 32 tile: 16 accumulators + 2 B vectors + 1 broadcast
  static R zero() { return _mm512_setzero_ps(); }
  static R set1(float x) { return _mm512_set1_ps(x); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, R r) { _mm512_storeu_ps(p, r); }
  static M mask(int64_t n) { return n >= W ? M(0xffff) : n <= 0 ? M(0) : M((1u << n) - 1); }
  static R loadm(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  static R loadm_or(const float* p, M m, float fill) { return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, p); }
  static R load_bf16(const uint16_t* p) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
  }
  static R loadm_bf16(const uint16_t* p, M m) { return m == M(0xffff) ? load_bf16(p) : load_bf16(Bf16Tail<W>(p, __builtin_popcount(unsigned(m))).v); }
  static void storem(float* p, R r, M m) { _mm512_mask_storeu_ps(p, m, r); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R sub(R a, R b) { return _mm512_sub_ps(a, b); }
  static R mul(R a, R b) { return _mm512_mul_ps(a, b); }
  static R div(R a, R b) { return _mm512_div_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static R max(R a, R b) { return _mm512_max_ps(a, b); }
  static R min(R a, R b) { return _mm512_min_ps(a, b); }
  static float hsum(R r) { return _mm512_reduce_add_ps(r); }
  static float hmax(R r) { return _mm512_reduce_max_ps(r); }
  static R exp(R x) {
    R xc = _mm512_min_ps(_mm512_set1_ps(kExpHi), _mm512_max_ps(_mm512_set1_ps(kExpLo), x));
    R fx = _mm512_roundscale_ps(_mm512_fmadd_ps(xc, _mm512_set1_ps(kLog2e), _mm512_set1_ps(0.5f)),
                                _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    R r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(kLn2Hi), xc);
    r = _mm512_fnmadd_ps(fx, _mm512_set1_ps(kLn2Lo), r);
    R z = _mm512_mul_ps(r, r);
    R y = _mm512_set1_ps(kExpP0);
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP1));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP2));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP3));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP4));
    y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kExpP5));
    y = _mm512_fmadd_ps(y, z, r);
    y = _mm512_add_ps(y, _mm512_set1_ps(1.0f));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127)), 23);
    y = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
    __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kExpFlush), _CMP_NLT_UQ);  // x >= flush or NaN
    return _mm512_maskz_mov_ps(keep, y);
  }
  static R tanh(R x) {
    __m512i bits = _mm512_castps_si512(x);
    __m512i sign = _mm512_and_si512(bits, _mm512_set1_epi32(int(0x80000000u)));
    R ax = _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_set1_epi32(int(0x80000000u)), bits));
    R big = _mm512_sub_ps(_mm512_set1_ps(1.0f),
                          _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(exp(_mm512_add_ps(ax, ax)), _mm512_set1_ps(1.0f))));
    R z = _mm512_mul_ps(ax, ax);
    R p = _mm512_set1_ps(kTanhP0);
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(kTanhP1));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(kTanhP2));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(kTanhP3));
    p = _mm512_fmadd_ps(p, z, _mm512_set1_ps(kTanhP4));
    R small = _mm512_fmadd_ps(_mm512_mul_ps(p, z), ax, ax);
    R r = _mm512_mask_mov_ps(big, _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.625f), _CMP_LT_OQ), small);
    return _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(r), sign));
  }
  static R neginf_to(R x, R y) {
    return _mm512_mask_mov_ps(x, _mm512_cmp_ps_mask(x, _mm512_set1_ps(kNegInf), _CMP_EQ_OQ), y);
  }
};
#pragma GCC pop_options

}  // namespace simd
}  // namespace kestrel
