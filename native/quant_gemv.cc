// Decode-time matmul with a quantized weight: y [M, N] = x [M, K] Wᵀ for M <= 8 float32 rows of x,
// the shape of batch-1 (and small-batch) generation, where every weight byte is read once per
// token and the speed limit is memory bandwidth, not arithmetic. Instead of decoding tiles into a
// buffer and calling SGEMM (quant.cc's path for bigger M), each thread streams its share of W's
// rows and widens the weights in registers: bf16 by a 16-bit shift, int8 by sign extension and
// one per-row scale, 4-bit codes by a 16-entry table lookup (one permute per 16 values) scaled
// per block. Activations stay float32 here, which keeps y within float32 rounding of the
// dequantized product; int8 and q4 weights first try quant_gemv_int8.cc, which quantizes x to
// int8 and uses integer dot products (the table lookups made q4 arithmetic-bound), unless
// KESTREL_QUANT_GEMV=float. Bodies: quant_gemv_body.inc, compiled for AVX-512, AVX2 and scalar.
// quant_gemv_rows runs this GEMV 8 rows at a time for some longer inputs (quant_weight.h says which).
#include <immintrin.h>

#include <algorithm>
#include <string>

#include "kernel_api.h"
#include "quant_weight.h"
#include "simd.h"

namespace kestrel {
namespace {

struct GemvTask {
  const QuantWeight* w;
  const float* x;
  int64_t ldx;
  const float* xe;  // 4-bit fast path: x's even elements [M, K/2]
  const float* xo;  // and its odd ones
  int64_t M;
  float* y;
  int64_t ldy;
};

namespace scalar {
struct V {
  using R = float;
  struct T {
    float t[16];
  };
  static constexpr int W = 1;
  static R zero() { return 0.0f; }
  static R load(const float* p) { return *p; }
  static R add(R a, R b) { return a + b; }
  static R fma(R a, R b, R c) { return a * b + c; }
  static float hsum(R r) { return r; }
  static R bf16(const uint16_t* p) { return bf16_to_f32(*p); }
  static R i8(const int8_t* p) { return float(*p); }
  static T table(const float* code, float s) {
    T t;
    for (int c = 0; c < 16; c++) t.t[c] = code[c] * s;
    return t;
  }
  static T scale(const T& c, float s) {
    T t;
    for (int i = 0; i < 16; i++) t.t[i] = c.t[i] * s;
    return t;
  }
  static T scale_at(const T& c, const float* s) { return scale(c, *s); }
  static void q4(const uint8_t* p, const T& t, R& hi, R& lo) {
    hi = t.t[*p >> 4];
    lo = t.t[*p & 15];
  }
};
#include "quant_gemv_body.inc"
}  // namespace scalar

#pragma GCC push_options
#pragma GCC target("avx2,fma,sse4.1")
namespace avx2 {
struct V {
  using R = __m256;
  struct T {
    __m256 lo, hi;  // table entries 0-7 and 8-15
  };
  static constexpr int W = 8;
  static R zero() { return _mm256_setzero_ps(); }
  static R load(const float* p) { return _mm256_loadu_ps(p); }
  static R add(R a, R b) { return _mm256_add_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(R r) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(r), _mm256_extractf128_ps(r, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
  }
  static R bf16(const uint16_t* p) {
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
  }
  static R i8(const int8_t* p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static T table(const float* code, float s) {
    __m256 vs = _mm256_set1_ps(s);
    return {_mm256_mul_ps(_mm256_loadu_ps(code), vs), _mm256_mul_ps(_mm256_loadu_ps(code + 8), vs)};
  }
  static T scale(const T& c, float s) {
    __m256 vs = _mm256_set1_ps(s);
    return {_mm256_mul_ps(c.lo, vs), _mm256_mul_ps(c.hi, vs)};
  }
  static T scale_at(const T& c, const float* s) {
    __m256 vs = _mm256_broadcast_ss(s);
    return {_mm256_mul_ps(c.lo, vs), _mm256_mul_ps(c.hi, vs)};
  }
  // entries 0-7 and 8-15 looked up separately, chosen by bit 3 (moved to the sign bit for blendv)
  static R lookup(const T& t, __m256i idx) {
    __m256 a = _mm256_permutevar8x32_ps(t.lo, idx), b = _mm256_permutevar8x32_ps(t.hi, idx);
    return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  }
  static void q4(const uint8_t* p, const T& t, R& hi, R& lo) {
    __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
    hi = lookup(t, _mm256_srli_epi32(b, 4));
    lo = lookup(t, _mm256_and_si256(b, _mm256_set1_epi32(15)));
  }
};
#include "quant_gemv_body.inc"
}  // namespace avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma,sse4.1")
namespace avx512 {
struct V {
  using R = __m512;
  using T = __m512;  // all 16 table entries in one register
  static constexpr int W = 16;
  static R zero() { return _mm512_setzero_ps(); }
  static R load(const float* p) { return _mm512_loadu_ps(p); }
  static R add(R a, R b) { return _mm512_add_ps(a, b); }
  static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
  static float hsum(R r) { return _mm512_reduce_add_ps(r); }
  static R bf16(const uint16_t* p) {
    __m512i h = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
  }
  static R i8(const int8_t* p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  static T table(const float* code, float s) { return _mm512_mul_ps(_mm512_loadu_ps(code), _mm512_set1_ps(s)); }
  static T scale(const T& c, float s) { return _mm512_mul_ps(c, _mm512_set1_ps(s)); }
  static T scale_at(const T& c, const float* s) { return _mm512_mul_ps(c, _mm512_broadcastss_ps(_mm_load_ss(s))); }
  static void q4(const uint8_t* p, const T& t, R& hi, R& lo) {
    __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    hi = _mm512_permutexvar_ps(_mm512_srli_epi32(b, 4), t);
    lo = _mm512_permutexvar_ps(_mm512_and_si512(b, _mm512_set1_epi32(15)), t);
  }
};
#include "quant_gemv_body.inc"
}  // namespace avx512
#pragma GCC pop_options

// 4-bit weights whose blocks straddle rows (K % block != 0) or are narrower than 32 values: one
// element at a time through its flat index (correct for any shape; real models never take it).
void rows_q4_any(const GemvTask& t, int64_t n0, int64_t n1) {
  const QuantWeight& w = *t.w;
  for (int64_t n = n0; n < n1; n++)
    for (int64_t m = 0; m < t.M; m++) {
      const float* xm = t.x + m * t.ldx;
      float s = 0;
      for (int64_t k = 0; k < w.K; k++) {
        int64_t e = n * w.K + k;
        uint8_t byte = w.data[e >> 1];
        s += w.code[(e & 1) ? byte & 15 : byte >> 4] * w.block_scale(e / w.block) * xm[k];
      }
      t.y[m * t.ldy + n] = s;
    }
}

thread_local ScratchBuffer split_x{"quant_gemv even/odd x"};

// The GEMV with float32 x (1..8 rows).
void gemv_float(const QuantWeight& w, const float* x, int64_t ldx, int64_t M, float* y, int64_t ldy) {
  GemvTask t{&w, x, ldx, nullptr, nullptr, M, y, ldy};
  bool q4_fast = w.kind == QuantKind::FourBit && w.block % 32 == 0 && w.K % w.block == 0;
  if (q4_fast) {
    int64_t half = w.K / 2;
    float* buf = split_x.get(size_t(2 * M * half));
    for (int64_t m = 0; m < M; m++)
      for (int64_t j = 0; j < half; j++) {
        buf[m * half + j] = x[m * ldx + 2 * j];
        buf[(M + m) * half + j] = x[m * ldx + 2 * j + 1];
      }
    t.xe = buf;
    t.xo = buf + M * half;
  }
  int level = simd::level();
  auto body = [&](int64_t n0, int64_t n1) {
    if (w.kind == QuantKind::FourBit && !q4_fast) return rows_q4_any(t, n0, n1);
    if (level == 2) return avx512::run_rows(t, n0, n1);
    if (level == 1) return avx2::run_rows(t, n0, n1);
    scalar::run_rows(t, n0, n1);
  };
  // rows of about 16 KB of weight per chunk at least, so tiny layers stay on one thread
  int64_t bytes_per_row = w.kind == QuantKind::BF16 ? 2 * w.K : w.kind == QuantKind::Int8 ? w.K : w.K / 2 + 1;
  parallel_for(w.N, std::max<int64_t>(1, 16384 / std::max<int64_t>(bytes_per_row, 1)), body);
}
}  // namespace

void quant_gemv(const QuantWeight& w, const float* x, int64_t ldx, int64_t M, float* y, int64_t ldy) {
  if (M < 1 || M > kGemvMaxRows) throw KernelError("quant_gemv: " + std::to_string(M) + " rows of x (1 to 8 allowed)");
  if (quant_gemv_int8(w, x, ldx, M, y, ldy)) return;  // int8 and q4 weights on CPUs with an integer dot product
  gemv_float(w, x, ldx, M, y, ldy);
}

bool quant_gemv_rows(const QuantWeight& w, const float* x, int64_t ldx, int64_t M, float* y, int64_t ldy, bool int8_activations) {
  if (M <= kGemvMaxRows) return false;
  const bool int8 = w.kind == QuantKind::Int8 && int8_activations && M < kInt8RowsMax && avx2_integer_prefill();
  const bool bf16 = w.kind == QuantKind::BF16 && M < kBf16RowsMax && simd::level() == 1 && !cpu_features().avx512f;
  if (!(int8 || bf16)) return false;
  for (int64_t m = 0; m < M; m += kGemvMaxRows) {
    const int64_t rows = std::min(kGemvMaxRows, M - m);
    // int8: a block with a non-finite x is refused by the integer path and taken in float
    if (!(int8 && quant_gemv_int8(w, x + m * ldx, ldx, rows, y + m * ldy, ldy))) gemv_float(w, x + m * ldx, ldx, rows, y + m * ldy, ldy);
  }
  return true;
}

}  // namespace kestrel
