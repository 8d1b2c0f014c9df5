// The decode GEMV with int8 activations, for int8 and q4 weights: x's rows are quantized once per
// call to int8 in blocks of 32 with one float scale each (llama.cpp's q8_0; its ggml_vec_dot_q4_0_q8_0
// is the same arithmetic), so that a weight register multiplies 64 activations in one integer dot
// product (vpdpbusd: u8 x s8, 4 products summed per int32 lane) instead of being widened to floats
// and looked up in a table. The signed weights are made unsigned and the shift taken back per lane:
//   q4:   sum_k (q_k - 8) xq_k = sum_k q_k xq_k - 8 sum_k xq_k      (q in 0..15 is already u8)
//   int8: sum_k w_k xq_k = sum_k (w_k + 128) xq_k - 128 sum_k xq_k  (w ^ 0x80 is w + 128 as u8)
// with sum_k xq_k per block computed with the activations. AVX2's u8 x s8 (vpmaddubsw) adds byte
// pairs into int16 with saturation, which 2 x 255 x 127 would overflow, so its int8 dot is instead
//   sum_k |w_k| (sign(w_k) xq_k)  (vpsignb twice; a pair is at most 2 x 128 x 127 < 2^15: exact, no shift)
// Paths: AVX512_VNNI (zmm), AVX-VNNI (ymm, VEX), AVX2 (vpmaddubsw + vpmaddwd) and a scalar one
// written as the definition; KESTREL_QUANT_GEMV forces one (or `float`: none).
// The added error against float activations is |sum_k w_k (x_k - d xq_k)| <= sum_b (d_b / 2) sum_{k in b} |w_k|
// with d_b = max_b |x| / 127 (test/quant/quant_gemv_int8.test.ts checks every path against it).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "kernel_api.h"
#include "quant_weight.h"
#include "simd.h"  // its float vocabularies (fma, hsum); it also silences GCC 12's AVX-512 false positive

namespace kestrel {
namespace {

constexpr int64_t kBlock = 32;  // activation values per scale (q8_0's block)
constexpr int64_t kPad = 128;   // activation rows are padded with zeros to a multiple of this (one zmm of q4 bytes)

// x's rows as int8, quantized once per call and read by every thread.
struct ActInt8 {
  int64_t Kp = 0;                     // K rounded up to kPad
  const int8_t* q = nullptr;          // int8 weights: [M, Kp] in k order
  const int8_t* qe = nullptr;         // q4 weights: [M, Kp/2] the even elements (a byte's high nibble's partners)
  const int8_t* qo = nullptr;         // and the odd ones (the low nibble's)
  const float* lane_scale = nullptr;  // the block scale d of each int32 lane of a dot product: int8 [M, Kp/4], q4 [M, Kp/8]
  const float* lane_corr = nullptr;   // q4 [M, Kp/8]: each lane's share of the zero point, 8 d sum_b(xq) / 4
  const float* row_corr = nullptr;    // int8 [M]: sum_b d_b sum_b(xq), times a path's shift the shift's total
};

struct IntTask {
  const QuantWeight* w;
  ActInt8 a;
  int64_t M;
  float* y;
  int64_t ldy;
};

thread_local ScratchBuffer act_buf{"quant_gemv int8 activations"};

// One block of n <= 32 values: q = round(x / d) (to nearest even), d = max|x| / 127, zeros past n.
// Returns false on a non-finite value (the float path then gives the IEEE result).
bool quantize_block(const float* x, int64_t n, int8_t* q, float& d, int32_t& sum) {
  float amax = 0;
  for (int64_t i = 0; i < n; i++) {
    float a = std::fabs(x[i]);
    if (!(a <= amax)) amax = a;  // NaN too
  }
  if (!std::isfinite(amax)) return false;
  d = amax / 127.0f;
  const float inv = amax > 0 ? 127.0f / amax : 0.0f;
  sum = 0;
  for (int64_t i = 0; i < kBlock; i++) {
    int v = i < n ? int(std::nearbyint(x[i] * inv)) : 0;
    v = std::min(127, std::max(-127, v));
    q[i] = int8_t(v);
    sum += v;
  }
  return true;
}

// A full block's quantizer: quantize_block's arithmetic on 32 values (bit for bit), or that function.
using BlockQuantizer = bool (*)(const float* x, int8_t* q, float& d, int32_t& sum);

bool quantize_block32_scalar(const float* x, int8_t* q, float& d, int32_t& sum) { return quantize_block(x, kBlock, q, d, sum); }

// A q4 block's 32 activation bytes apart: even elements to qe, odd ones to qo (they meet the weight
// bytes' high and low nibbles). SSE2, so every x86-64 path has it: a 16-bit lane's low byte
// sign-extended and its high byte shifted down, each pair of registers packed back to bytes.
void split_even_odd(const int8_t* block, int8_t* qe, int8_t* qo) {
  const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block)), b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(block + 16));
  const __m128i even = _mm_packs_epi16(_mm_srai_epi16(_mm_slli_epi16(a, 8), 8), _mm_srai_epi16(_mm_slli_epi16(b, 8), 8));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qe), even);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qo), _mm_packs_epi16(_mm_srai_epi16(a, 8), _mm_srai_epi16(b, 8)));
}

// Quantizes x [M, K] into `a` in the layout the weight kind reads; false on a non-finite x. Full
// blocks go through `full` (the path's vector quantizer), a row's last partial block through quantize_block.
bool quantize_rows(const float* x, int64_t ldx, int64_t M, int64_t K, bool q4, ActInt8& a, BlockQuantizer full) {
  const int64_t Kp = (K + kPad - 1) / kPad * kPad, lanes = q4 ? Kp / 8 : Kp / 4, lanes_per_block = q4 ? 4 : 8;
  const size_t floats = size_t(M * lanes * (q4 ? 2 : 1) + M), bytes = size_t(M * Kp);
  float* f = act_buf.get(floats + (bytes + 3) / 4);
  int8_t* q = reinterpret_cast<int8_t*>(f + floats);
  std::memset(q, 0, bytes);
  std::fill(f, f + floats, 0.0f);
  a = ActInt8{Kp, q, q, q + M * Kp / 2, f, q4 ? f + M * lanes : nullptr, q4 ? nullptr : f + M * lanes};
  float* corr = f + M * lanes;
  for (int64_t m = 0; m < M; m++) {
    double row_corr = 0;
    for (int64_t b = 0; b * kBlock < K; b++) {
      int8_t split[kBlock];
      int8_t* block = q4 ? split : q + m * Kp + b * kBlock;  // int8 weights read the blocks in order
      float d;
      int32_t sum;
      const float* xb = x + m * ldx + b * kBlock;
      const int64_t n = std::min(kBlock, K - b * kBlock);
      if (!(n == kBlock ? full(xb, block, d, sum) : quantize_block(xb, n, block, d, sum))) return false;
      for (int64_t l = 0; l < lanes_per_block; l++) f[m * lanes + b * lanes_per_block + l] = d;
      if (q4) {
        split_even_odd(block, q + m * Kp / 2 + b * kBlock / 2, q + (M + m) * Kp / 2 + b * kBlock / 2);
        for (int64_t l = 0; l < 4; l++) corr[m * lanes + b * 4 + l] = 2.0f * d * float(sum);
      } else {
        row_corr += double(d) * sum;
      }
    }
    if (!q4) corr[m] = float(row_corr);
  }
  return true;
}

// The definition, one integer dot product per block: y = sum_b d_b (sum_k w_k xq_k) (times the
// int8 row scale, or the q4 block scale inside the sum).
void rows_scalar(const IntTask& t, int64_t n0, int64_t n1) {
  const QuantWeight& w = *t.w;
  const ActInt8& a = t.a;
  const int64_t K = w.K, blocks = (K + kBlock - 1) / kBlock;
  for (int64_t n = n0; n < n1; n++)
    for (int64_t m = 0; m < t.M; m++) {
      float s = 0;
      for (int64_t b = 0; b < blocks; b++) {
        int32_t dot = 0;
        if (w.kind == QuantKind::Int8) {
          const int8_t* wr = reinterpret_cast<const int8_t*>(w.data) + n * K;
          for (int64_t k = b * kBlock; k < std::min(K, (b + 1) * kBlock); k++) dot += int32_t(wr[k]) * a.q[m * a.Kp + k];
          s += float(dot) * a.lane_scale[m * a.Kp / 4 + b * 8];
        } else {
          const uint8_t* wr = w.data + n * K / 2 + b * kBlock / 2;
          const int8_t *qe = a.qe + m * a.Kp / 2 + b * kBlock / 2, *qo = a.qo + m * a.Kp / 2 + b * kBlock / 2;
          for (int64_t j = 0; j < kBlock / 2; j++) dot += ((wr[j] >> 4) - 8) * qe[j] + ((wr[j] & 15) - 8) * qo[j];
          s += w.scales[n * blocks + b] * (float(dot) * a.lane_scale[m * a.Kp / 8 + b * 4]);
        }
      }
      t.y[m * t.ldy + n] = w.kind == QuantKind::Int8 ? s * (w.scales[n] / 127.0f) : s;
    }
}

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace qavx2 {
// 32 weight bytes per ymm; vpmaddubsw makes int16 sums of byte pairs, vpmaddwd adds pairs of those.
// The float side (fma, hsum) is simd.h's; the integer load/zero hide its float ones.
struct Ymm : simd::Avx2 {
  using I = __m256i;
  using F = __m256;
  static constexpr int64_t B = 32;
  static I zero() { return _mm256_setzero_si256(); }
  static I load(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
  static I load_tail(const uint8_t* p, int64_t n) {
    alignas(32) uint8_t tmp[B] = {};
    std::memcpy(tmp, p, size_t(n));
    return load(tmp);
  }
  static I nib_hi(I w) { return _mm256_and_si256(_mm256_srli_epi16(w, 4), _mm256_set1_epi8(15)); }
  static I nib_lo(I w) { return _mm256_and_si256(w, _mm256_set1_epi8(15)); }
  static I flip(I w) { return _mm256_xor_si256(w, _mm256_set1_epi8(char(0x80))); }
  static F zerof() { return simd::Avx2::zero(); }
  static F loadf(const float* p) { return simd::Avx2::load(p); }
  static F cvt(I i) { return _mm256_cvtepi32_ps(i); }
  static F fmsub(F a, F b, F c) { return _mm256_fmsub_ps(a, b, c); }
  // 2 q4 block scales (32 bytes = 2 blocks of 16), each over its 4 int32 lanes
  static F q4_scales(const float* s) {
    __m128 two = _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s)));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(two), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
  }
  // the first n (< 2) of them, zeros after: a masked load (a copy to a zeroed array would stall on store forwarding)
  static F q4_scales_tail(const float* s, int64_t n) {
    const __m128 one = _mm_maskload_ps(s, _mm_setr_epi32(n > 0 ? -1 : 0, 0, 0, 0));
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(one), _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
  }
};
struct V : Ymm {
  static I dot(I acc, I u, I s) { return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))); }
  // q4: both nibbles' byte-pair sums added in int16 before one vpmaddwd (each is at most 2 x 15 x 127,
  // the two 7620 < 2^15)
  static I q4_dot(I hi, I qe, I lo, I qo) {
    return _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(hi, qe), _mm256_maddubs_epi16(lo, qo)), _mm256_set1_epi16(1));
  }
  // int8 weights: |w| (vpsignb: -128 stays 0x80, which is 128 as u8) times xq with w's sign
  static constexpr int kI8Shift = 0;
  static I i8_operand(I w) { return _mm256_sign_epi8(w, w); }
  static I i8_dot(I absw, I w, I x) { return dot(zero(), absw, _mm256_sign_epi8(x, w)); }
};
#include "quant_gemv_int8_body.inc"

// quantize_block on 32 values in 4 ymm: the same max, d, 1/d and x * (1/d) rounded to nearest even
// (cvtps under the default MXCSR is nearbyint's rounding), so the same bytes.
bool quantize_block32(const float* x, int8_t* q, float& d, int32_t& sum) {
  const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(std::numeric_limits<float>::max());
  __m256 v[4], amax = _mm256_setzero_ps(), finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int i = 0; i < 4; i++) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    const __m256 a = _mm256_andnot_ps(sign, v[i]);
    finite = _mm256_and_ps(finite, _mm256_cmp_ps(a, big, _CMP_LE_OQ));  // false on NaN and inf
    amax = _mm256_max_ps(amax, a);
  }
  if (_mm256_movemask_ps(finite) != 0xff) return false;
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  const float m = _mm_cvtss_f32(_mm_max_ss(m4, _mm_movehdup_ps(m4)));
  d = m / 127.0f;
  const __m256 inv = _mm256_set1_ps(m > 0 ? 127.0f / m : 0.0f);
  const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
  __m256i r[4], s = _mm256_setzero_si256();
  for (int i = 0; i < 4; i++) {
    r[i] = _mm256_min_epi32(hi, _mm256_max_epi32(lo, _mm256_cvtps_epi32(_mm256_mul_ps(v[i], inv))));
    s = _mm256_add_epi32(s, r[i]);
  }
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
  sum = _mm_cvtsi128_si32(_mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1)));
  // packs work within 128-bit lanes: dwords come out as r0[0:4] r1[0:4] r2[0:4] r3[0:4] | r0[4:8] ...
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  return true;
}
}  // namespace qavx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avxvnni,avx2,fma")
namespace qavxvnni {
struct V : qavx2::Ymm {
  static I dot(I acc, I u, I s) { return _mm256_dpbusd_avx_epi32(acc, u, s); }
  static I q4_dot(I hi, I qe, I lo, I qo) { return dot(dot(zero(), hi, qe), lo, qo); }
  // int8 weights: w + 128 as u8 (no saturation in vpdpbusd), the shift taken back per row
  static constexpr int kI8Shift = 128;
  static I i8_operand(I w) { return flip(w); }
  static I i8_dot(I u, I, I x) { return dot(zero(), u, x); }
};
#include "quant_gemv_int8_body.inc"
}  // namespace qavxvnni
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vnni,avx2,fma")
namespace qavx512vnni {
struct V : simd::Avx512 {
  using I = __m512i;
  using F = __m512;
  static constexpr int64_t B = 64;
  static I zero() { return _mm512_setzero_si512(); }
  static I load(const void* p) { return _mm512_loadu_si512(p); }
  static I load_tail(const uint8_t* p, int64_t n) { return _mm512_maskz_loadu_epi8((uint64_t(1) << n) - 1, p); }
  static I nib_hi(I w) { return _mm512_and_si512(_mm512_srli_epi16(w, 4), _mm512_set1_epi8(15)); }
  static I nib_lo(I w) { return _mm512_and_si512(w, _mm512_set1_epi8(15)); }
  static I flip(I w) { return _mm512_xor_si512(w, _mm512_set1_epi8(char(0x80))); }
  static I dot(I acc, I u, I s) { return _mm512_dpbusd_epi32(acc, u, s); }
  static I q4_dot(I hi, I qe, I lo, I qo) { return dot(dot(zero(), hi, qe), lo, qo); }
  static constexpr int kI8Shift = 128;  // as qavxvnni's
  static I i8_operand(I w) { return flip(w); }
  static I i8_dot(I u, I, I x) { return dot(zero(), u, x); }
  static F zerof() { return simd::Avx512::zero(); }
  static F loadf(const float* p) { return simd::Avx512::load(p); }
  static F cvt(I i) { return _mm512_cvtepi32_ps(i); }
  static F fmsub(F a, F b, F c) { return _mm512_fmsub_ps(a, b, c); }
  // 4 q4 block scales (64 bytes = 4 blocks of 16), each over its 4 int32 lanes
  static F q4_scales(const float* s) {
    return _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0), _mm512_castps128_ps512(_mm_loadu_ps(s)));
  }
  // the first n (< 4) of them, zeros after
  static F q4_scales_tail(const float* s, int64_t n) {
    return _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0), _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), s));
  }
};
#include "quant_gemv_int8_body.inc"

// quantize_block on 32 values in 2 zmm (bit for bit, as qavx2's)
bool quantize_block32(const float* x, int8_t* q, float& d, int32_t& sum) {
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const __m512 a0 = _mm512_abs_ps(v0), a1 = _mm512_abs_ps(v1), big = _mm512_set1_ps(std::numeric_limits<float>::max());
  if ((_mm512_cmp_ps_mask(a0, big, _CMP_LE_OQ) & _mm512_cmp_ps_mask(a1, big, _CMP_LE_OQ)) != 0xffff) return false;
  const float m = _mm512_reduce_max_ps(_mm512_max_ps(a0, a1));
  d = m / 127.0f;
  const __m512 inv = _mm512_set1_ps(m > 0 ? 127.0f / m : 0.0f);
  const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
  const __m512i r0 = _mm512_min_epi32(hi, _mm512_max_epi32(lo, _mm512_cvtps_epi32(_mm512_mul_ps(v0, inv))));
  const __m512i r1 = _mm512_min_epi32(hi, _mm512_max_epi32(lo, _mm512_cvtps_epi32(_mm512_mul_ps(v1, inv))));
  sum = _mm512_reduce_add_epi32(_mm512_add_epi32(r0, r1));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtepi32_epi8(r0));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(q + 16), _mm512_cvtepi32_epi8(r1));
  return true;
}
}  // namespace qavx512vnni
#pragma GCC pop_options

enum Path { kFloat, kScalar, kAvx2, kAvxVnni, kAvx512Vnni };
const char* const kPathNames[] = {"float", "scalar", "avx2", "avxvnni", "avx512vnni"};

// KESTREL_QUANT_GEMV's path (read per call, like KESTREL_BF16_GEMM, so a test can switch it), or
// the best the CPU has (float where it lacks AVX2: there the integer path has no fast dot product);
// a forced path the CPU lacks is an error.
Path chosen_path() {
  const CpuFeatures& f = cpu_features();
  const char* env = std::getenv("KESTREL_QUANT_GEMV");
  if (!env || !*env || std::strcmp(env, "auto") == 0) return f.avx512vnni ? kAvx512Vnni : f.avxvnni ? kAvxVnni : f.avx2 && f.fma ? kAvx2 : kFloat;
  const bool has[] = {true, true, f.avx2 && f.fma, f.avxvnni, f.avx512vnni};
  const std::string s(env);
  for (int p = 0; p < 5; p++)
    if (s == kPathNames[p]) {
      if (!has[p]) throw KernelError("KESTREL_QUANT_GEMV=" + s + ": this CPU (or KESTREL_SIMD) lacks " + (p == kAvx2 ? "avx2/fma" : p == kAvxVnni ? "avx_vnni" : "avx512_vnni"));
      return Path(p);
    }
  throw KernelError("KESTREL_QUANT_GEMV=" + s + ": expected avx512vnni, avxvnni, avx2, scalar, float or auto");
}

}  // namespace

bool is_q4_0(const QuantWeight& w) {
  if (w.kind != QuantKind::FourBit || w.block != kBlock || w.K % kBlock != 0 || w.scale_codes) return false;
  for (int c = 0; c < 16; c++)
    if (w.code[c] != float(c - 8)) return false;
  return true;
}

bool quantize_q8_0(const float* x, int64_t ldx, int64_t M, int64_t K, int8_t* q, float* d, int32_t* sums) {
  const CpuFeatures& f = cpu_features();
  const BlockQuantizer full = f.avx2 && f.fma ? qavx2::quantize_block32 : quantize_block32_scalar;
  const int64_t blocks = (K + kBlock - 1) / kBlock;
  for (int64_t m = 0; m < M; m++)
    for (int64_t b = 0; b < blocks; b++) {
      const float* xb = x + m * ldx + b * kBlock;
      const int64_t n = std::min(kBlock, K - b * kBlock), i = m * blocks + b;
      if (!(n == kBlock ? full(xb, q + i * kBlock, d[i], sums[i]) : quantize_block(xb, n, q + i * kBlock, d[i], sums[i]))) return false;
    }
  return true;
}

bool avx2_integer_prefill() {
  try {
    return !cpu_features().avx512f && chosen_path() == kAvx2;
  } catch (const KernelError&) {
    return false;  // a KESTREL_QUANT_GEMV this CPU cannot run: the decode GEMV reports it
  }
}

std::string quant_gemv_path_name() {
  try {
    return kPathNames[chosen_path()];
  } catch (const KernelError& e) {
    return e.what();
  }
}

bool quant_gemv_int8(const QuantWeight& w, const float* x, int64_t ldx, int64_t M, float* y, int64_t ldy) {
  const Path path = chosen_path();
  if (path == kFloat) return false;
  const bool q4 = is_q4_0(w);
  const bool i8 = w.kind == QuantKind::Int8;
  if (!q4 && !i8) return false;
  IntTask t{&w, {}, M, y, ldy};
  const BlockQuantizer full = path == kAvx512Vnni ? qavx512vnni::quantize_block32 : path == kScalar ? quantize_block32_scalar : qavx2::quantize_block32;
  if (!quantize_rows(x, ldx, M, w.K, q4, t.a, full)) return false;
  auto body = [&](int64_t n0, int64_t n1) {
    if (path == kAvx512Vnni) return qavx512vnni::run_rows(t, n0, n1);
    if (path == kAvxVnni) return qavxvnni::run_rows(t, n0, n1);
    if (path == kAvx2) return qavx2::run_rows(t, n0, n1);
    rows_scalar(t, n0, n1);
  };
  // rows of about 16 KB of weight per chunk at least, so tiny layers stay on one thread
  const int64_t bytes_per_row = q4 ? w.K / 2 + w.K / kBlock * 4 : w.K;
  parallel_for(w.N, std::max<int64_t>(1, 16384 / std::max<int64_t>(bytes_per_row, 1)), body);
  return true;
}

}  // namespace kestrel
