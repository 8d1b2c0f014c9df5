// The prefill GEMM of q4 weights with int8 activations on AVX2 (quant_weight.h: quant_gemm_q4).
// Without AVX-512 the float path (quant.cc: the SGEMM, decoding W as it packs it) does 8 multiply-adds
// per FMA; vpmaddubsw does 32 u8 x s8 products per instruction. The q4 codes (0..15) are its unsigned
// operand and x, quantized as q8_0 (quantize_q8_0), the signed one, so a byte pair sums to at most
// 2 x 15 x 127 = 3810 and a block's eight of them add in int16 (30480 < 2^15) before one vpmaddwd:
//   y[m, n] = Σ_b d_w[n, b] d_x[m, b] (Σ_{k in b} q[n, k] xq[m, k] - 8 Σ_{k in b} xq[m, k])
// which is the decode GEMV's arithmetic (quant_gemv_int8.cc) and llama.cpp's q4_0 x q8_0.
// Measured on Zen 3 (AVX2 only), one core: this micro-kernel 68-70 G multiply-adds/s, the float
// SGEMM's 42-46. The integer sums are exact; the float ones run over blocks in order.
// Each thread takes 16-column panels of W: it unpacks the panel's codes to bytes in the order the
// kernel reads them (k in groups of 4 per int32 lane, 16 columns per k group) with its block scales
// beside, then runs every 6-row block of x against it.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "kernel_api.h"
#include "quant_weight.h"
#include "transpose8.h"

#define KESTREL_AVX2 __attribute__((target("avx2,fma")))

namespace kestrel {
namespace {

constexpr int kMR = 6, kNR = 16;  // a 6 x 16 tile: 12 int16 accumulators, 2 weight vectors, 1 broadcast
constexpr int64_t kBlock = 32;    // q4_0's and q8_0's block

// x quantized once per call: rows padded with zeros to a multiple of kMR, read by every thread.
struct Act {
  const int8_t* q;     // [Mp, K]
  const float* d;      // [Mp, blocks]
  const int32_t* z;    // [Mp, blocks]: 8 Σ xq, the zero point's share
};

thread_local ScratchBuffer act_buf{"quant_gemm_q4 activations"}, panel_buf{"quant_gemm_q4 panel"};

// Columns n0 .. n0 + nr (nr <= 16) of W as the kernel reads them: codes [K/4][16][4] bytes (byte
// (g, j, i) is column j's code at k = 4g + i) and scales [blocks][16]; columns past nr have code 0
// and scale 0, so they add nothing.
KESTREL_AVX2 void pack_panel(const QuantWeight& w, int64_t n0, int nr, uint8_t* codes, float* scales) {
  const int64_t K = w.K, blocks = K / kBlock;
  const __m128i low = _mm_set1_epi8(15);
  for (int h = 0; h < 2; h++)        // columns 8h .. 8h + 7
    for (int64_t k = 0; k < K; k += kBlock) {  // one block: 16 bytes of each row
      __m256 r[8];
      for (int j = 0; j < 8; j++) {
        const int col = 8 * h + j;
        if (col >= nr) {
          r[j] = _mm256_setzero_ps();
          continue;
        }
        // two codes per byte, high nibble first: interleave (hi, lo) back into k order
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.data + (n0 + col) * K / 2 + k / 2));
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(v, 4), low), lo = _mm_and_si128(v, low);
        r[j] = _mm256_castsi256_ps(_mm256_set_m128i(_mm_unpackhi_epi8(hi, lo), _mm_unpacklo_epi8(hi, lo)));
      }
      // each 32-bit lane is a group of 4 k: the 8 x 8 transpose puts 8 columns' groups side by side
      transpose8(r);
      for (int g = 0; g < 8; g++) _mm256_store_ps(reinterpret_cast<float*>(codes + (k / 4 + g) * 64 + 32 * h), r[g]);
    }
  for (int64_t b = 0; b < blocks; b++)
    for (int j = 0; j < kNR; j++) scales[b * kNR + j] = j < nr ? w.block_scale((n0 + j) * blocks + b) : 0.0f;
}

// 4 bytes of xq in every int32 lane
KESTREL_AVX2 inline __m256i x4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// y rows m .. m + mr (mr <= 6), columns of one panel (nr <= 16): the float sums live in an L1 tile,
// since the 12 int16 accumulators, the two weight vectors and a broadcast fill the 16 ymm.
KESTREL_AVX2 void kernel(int64_t K, const uint8_t* codes, const float* scales, const Act& a, int64_t m, float* y,
                         int64_t ldy, int mr, int nr) {
  const int64_t blocks = K / kBlock;
  const int8_t* xq = a.q + m * K;
  alignas(32) float acc[kMR][kNR] = {};
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < blocks; b++) {
    const uint8_t* p = codes + b * kBlock * kNR;
    const int8_t* xb = xq + b * kBlock;
    __m256i s[kMR][2];
    {
      const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(p)), w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(p + 32));
#pragma GCC unroll 6
      for (int i = 0; i < kMR; i++) {
        const __m256i x = x4(xb + i * K);
        s[i][0] = _mm256_maddubs_epi16(w0, x);
        s[i][1] = _mm256_maddubs_epi16(w1, x);
      }
    }
#pragma GCC unroll 7
    for (int g = 1; g < 8; g++) {
      const __m256i w0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(p + 64 * g));
      const __m256i w1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(p + 64 * g + 32));
#pragma GCC unroll 6
      for (int i = 0; i < kMR; i++) {
        const __m256i x = x4(xb + i * K + 4 * g);
        s[i][0] = _mm256_add_epi16(s[i][0], _mm256_maddubs_epi16(w0, x));
        s[i][1] = _mm256_add_epi16(s[i][1], _mm256_maddubs_epi16(w1, x));
        // keeps the sums a chain in registers: GCC otherwise reassociates them into a tree of 96
        // live products and spills most of them (measured 2x slower)
        __asm__("" : "+x"(s[i][0]), "+x"(s[i][1]));
      }
    }
    const __m256 d0 = _mm256_load_ps(scales + b * kNR), d1 = _mm256_load_ps(scales + b * kNR + 8);
#pragma GCC unroll 6
    for (int i = 0; i < kMR; i++) {
      const __m256i z = _mm256_set1_epi32(a.z[(m + i) * blocks + b]);
      const __m256 dx = _mm256_set1_ps(a.d[(m + i) * blocks + b]);
      const __m256 f0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_madd_epi16(s[i][0], ones), z));
      const __m256 f1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_madd_epi16(s[i][1], ones), z));
      _mm256_store_ps(acc[i], _mm256_fmadd_ps(f0, _mm256_mul_ps(d0, dx), _mm256_load_ps(acc[i])));
      _mm256_store_ps(acc[i] + 8, _mm256_fmadd_ps(f1, _mm256_mul_ps(d1, dx), _mm256_load_ps(acc[i] + 8)));
    }
  }
  for (int i = 0; i < mr; i++) std::memcpy(y + (m + i) * ldy, acc[i], sizeof(float) * size_t(nr));
}

}  // namespace

// Where avx2_integer_prefill (quant_weight.h). Known limit: every 16-column panel reads all of x, so very long inputs (M K past L2) read x from L3.
bool quant_gemm_q4(const QuantWeight& w, const float* x, int64_t ldx, int64_t M, float* y, int64_t ldy) {
  if (M <= kGemvMaxRows || w.K == 0 || !is_q4_0(w) || !avx2_integer_prefill()) return false;
  const int64_t K = w.K, N = w.N, blocks = K / kBlock, Mp = (M + kMR - 1) / kMR * kMR;
  const size_t q_floats = size_t(Mp * K + 3) / 4, s_floats = size_t(Mp * blocks);
  float* buf = act_buf.get(q_floats + 2 * s_floats);
  int8_t* q = reinterpret_cast<int8_t*>(buf);
  float* d = buf + q_floats;
  int32_t* z = reinterpret_cast<int32_t*>(d + s_floats);
  if (!quantize_q8_0(x, ldx, M, K, q, d, z)) return false;  // a non-finite x: the float path gives IEEE's result
  std::memset(q + M * K, 0, size_t((Mp - M) * K));
  std::fill(d + M * blocks, d + Mp * blocks, 0.0f);
  for (int64_t i = 0; i < Mp * blocks; i++) z[i] = i < M * blocks ? 8 * z[i] : 0;
  const Act a{q, d, z};
  const int64_t panels = (N + kNR - 1) / kNR;
  parallel_for(panels, 1, [&](int64_t p0, int64_t p1) {
    float* pb = panel_buf.get(size_t(K * kNR / 4 + blocks * kNR));
    uint8_t* codes = reinterpret_cast<uint8_t*>(pb);
    float* scales = pb + K * kNR / 4;
    for (int64_t p = p0; p < p1; p++) {
      const int64_t n0 = p * kNR;
      const int nr = int(std::min<int64_t>(kNR, N - n0));
      pack_panel(w, n0, nr, codes, scales);
      for (int64_t m = 0; m < M; m += kMR) kernel(K, codes, scales, a, m, y + n0, ldy, int(std::min<int64_t>(kMR, M - m)), nr);
    }
  });
  return true;
}

}  // namespace kestrel
