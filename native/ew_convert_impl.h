// Data movement per ISA (see ew_isa.h): float32 <-> float16 / bfloat16 conversions with the
// rounding of runtime.cc (nearest even, NaN payloads kept) in vectors, and the register-blocked
// transpose of 4-byte elements that the copy kernel's tiled path uses.
// Included by the ew_<isa>.cc files inside their namespace, after ew_binary_impl.h.

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
      __m256 r[8];
      for (int q = 0; q < 8; q++) r[q] = _mm256_loadu_ps(s + q * ss);
      transpose8(r);
      for (int q = 0; q < 8; q++) _mm256_storeu_ps(d + q * ds, r[q]);
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
