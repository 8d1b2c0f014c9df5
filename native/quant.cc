// Matmul with a quantized weight W [N, K] (PyTorch's [out, in]), dequantized piece by piece inside
// the product so the float weight never exists whole (QLoRA, Dettmers et al. 2023; bitsandbytes'
// layouts, src/quant/ documents them):
//   quant_linear:          y [M, N] = x [M, K] Wᵀ     (sgemm with W's panels decoded as it packs them)
//   quant_linear_backward: dx [M, K] = dy [M, N] W   (threads split K; tiles accumulate, beta 1)
// Rows of W are decoded into a per-thread scratch buffer (a 16-entry code table scaled by the
// block's absmax, looked up with one permute per 16 values): in the forward a 16-row strip that the
// GEMM packs at once (sgemm_pack_b), in the backward a tile handed to kestrel::sgemm.
// A bfloat16/float16 x (or dy) takes the tile rounded to its dtype through hgemm instead (gemm_half.h).
// A float32 x of at most 8 rows (decoding) skips the GEMM: quant_gemv.cc streams W once instead;
// an inference prefill of q4 weights on AVX2 may take int8 activations (quant_gemm_q4.cc).
// Weights: 4-bit codes + table (NF4/FP4/q4), int8 with a scale per row, or plain bfloat16.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>

#include "bf16_round.h"
#include "gemm.h"
#include "gemm_half.h"
#include "kernel_api.h"
#include "quant_weight.h"
#include "simd.h"

namespace kestrel {
namespace {

bool pow2(int64_t v) { return v > 0 && (v & (v - 1)) == 0; }

// A float32/uint8/int8 contiguous vector of exactly n elements.
const void* need_vec(const char* k, const char* what, const View& v, int dtype, int64_t n) {
  if (v.dtype != dtype) fail(k, std::string(what) + " must be " + dtype_name(dtype) + ", got " + dtype_name(v.dtype));
  if (!v.contiguous()) fail(k, std::string(what) + " " + shape_str(v) + " must be contiguous");
  if (v.numel() != n) fail(k, std::string(what) + " " + shape_str(v) + " must have " + std::to_string(n) + " elements");
  return v.data + v.offset * int64_t(dtype_size(dtype));
}

}  // namespace

QuantWeight read_weight(Args& args, const char* k) {
  QuantWeight w;
  int64_t kind = args.i64();
  if (kind < 0 || kind > 2) fail(k, "unknown weight kind " + std::to_string(kind) + " (0 = 4-bit, 1 = int8, 2 = bf16)");
  w.kind = QuantKind(kind);
  w.four_bit = w.kind == QuantKind::FourBit;
  w.N = args.i64();
  w.K = args.i64();
  if (w.N < 0 || w.K < 0) fail(k, "negative weight size N=" + std::to_string(w.N) + " K=" + std::to_string(w.K));
  View data = args.view();
  bool has_code = args.has_view();
  View code = has_code ? args.view() : View{};
  w.block = args.i64();
  View scales = args.view();
  bool nested = args.has_view();
  int64_t numel = w.N * w.K;
  if (w.four_bit) {
    if (!pow2(w.block) || w.block < 2 || w.block > 65536) fail(k, "blockSize " + std::to_string(w.block) + " must be a power of two");
    w.data = static_cast<const uint8_t*>(need_vec(k, "packed weight", data, U8, (numel + 1) / 2));
    if (!has_code) fail(k, "a 4-bit weight needs its 16-entry code table");
    w.code = static_cast<const float*>(need_vec(k, "code table", code, F32, 16));
  } else if (w.kind == QuantKind::BF16) {
    if (has_code) fail(k, "a bf16 weight takes no code table");
    w.data = static_cast<const uint8_t*>(need_vec(k, "bf16 weight", data, BF16, numel));
    if (nested) fail(k, "a bf16 weight has no double-quantized statistics");
    return w;  // `scales` is not read: the packer sends the data again in its place
  } else {
    if (has_code) fail(k, "an int8 weight takes no code table");
    if (nested) fail(k, "an int8 weight has no double-quantized statistics");
    w.data = static_cast<const uint8_t*>(need_vec(k, "int8 weight", data, I8, numel));
  }
  int64_t nscales = w.four_bit ? (numel + w.block - 1) / w.block : w.N;
  if (!nested) {
    w.scales = static_cast<const float*>(need_vec(k, w.four_bit ? "absmax" : "SCB", scales, F32, nscales));
    return w;
  }
  View ncode = args.view(), nabs = args.view();
  w.nested_offset = float(args.num());
  w.nested_block = args.i64();
  if (!pow2(w.nested_block)) fail(k, "nested blockSize " + std::to_string(w.nested_block) + " must be a power of two");
  w.scale_codes = static_cast<const uint8_t*>(need_vec(k, "absmax codes", scales, U8, nscales));
  w.nested_code = static_cast<const float*>(need_vec(k, "nested code", ncode, F32, 256));
  w.nested_absmax = static_cast<const float*>(
      need_vec(k, "nested absmax", nabs, F32, (nscales + w.nested_block - 1) / w.nested_block));
  return w;
}

namespace {

// Rows x cols of a 2-d float32 (or, for a half-precision GEMM, bfloat16/float16) matrix with
// unit column stride: element (i, j) at p[i*ld + j] of its dtype.
struct Mat {
  void* p;
  int dtype;
  int64_t rows, cols, ld;
  float* f() const { return static_cast<float*>(p); }
  uint16_t* h() const { return static_cast<uint16_t*>(p); }
};

Mat read_matrix(const char* k, const char* what, const View& v, bool out) {
  if (v.dtype != F32 && v.dtype != BF16 && v.dtype != F16)
    fail(k, std::string(what) + " must be float32, bfloat16 or float16, got " + dtype_name(v.dtype) + " " + shape_str(v));
  if (v.ndim != 2) fail(k, std::string(what) + " " + shape_str(v) + " must be 2-d [rows, features]");
  int64_t rows = v.shape[0], cols = v.shape[1];
  if (out ? !v.contiguous() : (cols > 1 && v.stride[1] != 1) || v.stride[0] < 0)
    fail(k, std::string(what) + " " + shape_str(v) + (out ? " must be contiguous" : " needs unit stride in its last dim"));
  int64_t ld = rows > 1 ? v.stride[0] : std::max<int64_t>(cols, 1);
  return {v.data + v.offset * int64_t(dtype_size(v.dtype)), v.dtype, rows, cols, ld};
}

// ---------------------------------------------------------------- decoding (one body per ISA)

// Each decode4_* writes flat weight elements [e0, e1) of a 4-bit weight to out, block by block:
// the block's 16 code values scaled by its absmax form the lookup table.

// Elements [e0, e1) of one block with the scaled table t.
void decode4_block(const uint8_t* data, int64_t e0, int64_t e1, const float* t, float* out) {
  for (int64_t i = e0; i < e1; i++) {
    uint8_t byte = data[i >> 1];
    *out++ = t[(i & 1) ? byte & 15 : byte >> 4];
  }
}

void decode4_scalar(const QuantWeight& w, int64_t e0, int64_t e1, float* out) {
  for (int64_t e = e0, b = e0 / w.block; e < e1; b++) {  // one division per call, not two per block
    int64_t end = std::min(e1, (b + 1) * w.block);
    float s = w.block_scale(b), t[16];
    for (int c = 0; c < 16; c++) t[c] = w.code[c] * s;
    decode4_block(w.data, e, end, t, out + (e - e0));
    e = end;
  }
}

// The block loop shared by the SIMD bodies, a macro because GCC does not carry a function's
// target("avx512f") into templates or lambdas it calls. LOAD_TABLE loads the code table,
// SCALE multiplies it by the block's absmax into registers, STORE_TABLE spills it to t[] for the
// scalar edges (an odd first element, a tail under 16), LOOKUP16 decodes the 8 bytes at i / 2.
#define KESTREL_DECODE4_BODY(LOAD_TABLE, SCALE, STORE_TABLE, LOOKUP16)                      \
  const LOAD_TABLE;                                                                        \
  for (int64_t e = e0, b = e0 / w.block; e < e1; b++) {                                   \
    int64_t end = std::min(e1, (b + 1) * w.block);                                         \
    float s = w.block_scale(b);                                                            \
    SCALE;                                                                                 \
    float* o = out + (e - e0);                                                             \
    int64_t i = e;                                                                         \
    bool odd = i & 1, tail = ((end - i - odd) & 15) != 0;                                  \
    alignas(64) float t[16];                                                               \
    if (odd || tail) STORE_TABLE;                                                          \
    if (odd) *o++ = t[w.data[i++ >> 1] & 15];                                              \
    for (; i + 16 <= end; i += 16, o += 16) LOOKUP16;                                      \
    if (i < end) decode4_block(w.data, i, end, t, o);                                      \
    e = end;                                                                               \
  }

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma,sse4.1")
// Eight bytes -> sixteen nibble indices in memory order (high nibble first), as bytes.
inline __m128i nibbles(const uint8_t* p) {
  __m128i w = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  __m128i hi = _mm_srli_epi16(w, 4), lo = _mm_slli_epi16(_mm_and_si128(w, _mm_set1_epi16(15)), 8);
  return _mm_or_si128(hi, lo);  // little-endian u16 lanes: byte 2j = high nibble, 2j+1 = low
}

void decode4_avx512(const QuantWeight& w, int64_t e0, int64_t e1, float* out) {
  // all 16 entries fit one register: one permute per 16 values
  KESTREL_DECODE4_BODY(__m512 code = _mm512_loadu_ps(w.code), __m512 table = _mm512_mul_ps(code, _mm512_set1_ps(s)),
                       _mm512_store_ps(t, table),
                       _mm512_storeu_ps(o, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(nibbles(w.data + (i >> 1))), table)))
}

void decode8_avx512(const int8_t* q, int64_t n, float s, float* out) {
  __m512 vs = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                                reinterpret_cast<const __m128i*>(q + i)))), vs));
  for (; i < n; i++) out[i] = float(q[i]) * s;
}
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma,sse4.1")
// Entries 0-7 and 8-15 looked up separately, chosen by bit 3 (moved to the sign bit for blendv).
inline __m256 lookup8(__m256 lo_t, __m256 hi_t, __m256i idx) {
  __m256 a = _mm256_permutevar8x32_ps(lo_t, idx), b = _mm256_permutevar8x32_ps(hi_t, idx);
  return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

inline void lookup16_avx2(const uint8_t* p, __m256 lo_t, __m256 hi_t, float* o) {
  __m128i w = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  __m128i idx = _mm_or_si128(_mm_srli_epi16(w, 4), _mm_slli_epi16(_mm_and_si128(w, _mm_set1_epi16(15)), 8));
  _mm256_storeu_ps(o, lookup8(lo_t, hi_t, _mm256_cvtepu8_epi32(idx)));
  _mm256_storeu_ps(o + 8, lookup8(lo_t, hi_t, _mm256_cvtepu8_epi32(_mm_srli_si128(idx, 8))));
}

void decode4_avx2(const QuantWeight& w, int64_t e0, int64_t e1, float* out) {
  KESTREL_DECODE4_BODY(__m256 code_lo = _mm256_loadu_ps(w.code); const __m256 code_hi = _mm256_loadu_ps(w.code + 8),
                       __m256 vs = _mm256_set1_ps(s); __m256 lo_t = _mm256_mul_ps(code_lo, vs);
                       __m256 hi_t = _mm256_mul_ps(code_hi, vs),
                       (_mm256_store_ps(t, lo_t), _mm256_store_ps(t + 8, hi_t)),
                       lookup16_avx2(w.data + (i >> 1), lo_t, hi_t, o))
}

void decode8_avx2(const int8_t* q, int64_t n, float s, float* out) {
  __m256 vs = _mm256_set1_ps(s);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                                                reinterpret_cast<const __m128i*>(q + i)))), vs));
  for (; i < n; i++) out[i] = float(q[i]) * s;
}
#pragma GCC pop_options
#undef KESTREL_DECODE4_BODY

void decode8_scalar(const int8_t* q, int64_t n, float s, float* out) {
  for (int64_t i = 0; i < n; i++) out[i] = float(q[i]) * s;
}

// ---------------------------------------------------------------- decoding straight to bfloat16

// The decoders above rounded by float_to_half afterwards, in one pass over registers: the value
// q * s (int8) or code * absmax (4-bit) rounded to bf16 as f32_to_bf16 does (nearest even, NaN
// kept quiet), so the result equals decode_tile then float_to_half bit for bit.
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx2,fma,sse4.1")
void decode8_bf16_avx512(const int8_t* q, int64_t n, float s, uint16_t* out) {
  __m512 vs = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i)))), vs);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), round_bf16x16(f));
  }
  for (; i < n; i++) out[i] = f32_to_bf16(float(q[i]) * s);
}

// Flat elements [e0, e1) of a 4-bit weight: per block the 16 scaled codes rounded to bf16 fill the
// low half of a register, and one 16-bit permute decodes 32 values (16 bytes of codes).
void decode4_bf16_avx512(const QuantWeight& w, int64_t e0, int64_t e1, uint16_t* out) {
  const __m512 code = _mm512_loadu_ps(w.code);
  for (int64_t e = e0, b = e0 / w.block; e < e1; b++) {  // one division per call, not two per block
    int64_t end = std::min(e1, (b + 1) * w.block);
    __m256i t16 = round_bf16x16(_mm512_mul_ps(code, _mm512_set1_ps(w.block_scale(b))));
    __m512i table = _mm512_castsi256_si512(t16);
    alignas(32) uint16_t t[16];
    bool odd = e & 1, tail = ((end - e - odd) & 31) != 0;
    if (odd || tail) _mm256_store_si256(reinterpret_cast<__m256i*>(t), t16);  // the scalar edges' table
    uint16_t* o = out + (e - e0);
    int64_t i = e;
    if (odd) *o++ = t[w.data[i++ >> 1] & 15];
    for (; i + 32 <= end; i += 32, o += 32) {
      // byte b = (hi, lo) -> 32-bit lane b = hi | lo << 16: words in memory order, high nibble first
      __m512i b = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.data + (i >> 1))));
      __m512i idx = _mm512_or_si512(_mm512_srli_epi32(b, 4), _mm512_slli_epi32(_mm512_and_si512(b, _mm512_set1_epi32(15)), 16));
      _mm512_storeu_si512(o, _mm512_permutexvar_epi16(idx, table));
    }
    for (; i < end; i++) {
      uint8_t byte = w.data[i >> 1];
      *o++ = t[(i & 1) ? byte & 15 : byte >> 4];
    }
    e = end;
  }
}
#pragma GCC pop_options

// W[n, k0:k1] of a 4-bit or int8 weight as bfloat16 into dst, or false where this CPU lacks
// AVX-512 BW (the caller decodes to float). A bf16 weight is never decoded: half_tile_of uses it in place.
bool decode_row_bf16(const QuantWeight& w, int64_t n, int64_t k0, int64_t k1, uint16_t* dst) {
  if (simd::level() < 2 || !cpu_features().avx512bw) return false;
  int64_t e = n * w.K + k0;
  if (w.four_bit) decode4_bf16_avx512(w, e, e + (k1 - k0), dst);
  else decode8_bf16_avx512(reinterpret_cast<const int8_t*>(w.data) + e, k1 - k0, w.scales[n] / 127.0f, dst);
  return true;
}

// Flat elements [e0, e1) of a 4-bit weight into out.
void decode4_range(const QuantWeight& w, int64_t e0, int64_t e1, float* out) {
  switch (simd::level()) {
    case 2: return decode4_avx512(w, e0, e1, out);
    case 1: return decode4_avx2(w, e0, e1, out);
    default: return decode4_scalar(w, e0, e1, out);
  }
}

// W[n0:n1, k0:k1] into dst (row stride ld).
void decode_tile(const QuantWeight& w, int64_t n0, int64_t n1, int64_t k0, int64_t k1, float* dst, int64_t ld) {
  if (w.four_bit && k0 == 0 && k1 == w.K && ld == w.K) return decode4_range(w, n0 * w.K, n1 * w.K, dst);
  int level = simd::level();
  for (int64_t n = n0; n < n1; n++, dst += ld) {
    int64_t e = n * w.K + k0;
    if (w.four_bit) {
      decode4_range(w, e, e + (k1 - k0), dst);
      continue;
    }
    if (w.kind == QuantKind::BF16) {
      const uint16_t* h = reinterpret_cast<const uint16_t*>(w.data) + e;
      for (int64_t k = 0; k < k1 - k0; k++) dst[k] = bf16_to_f32(h[k]);
      continue;
    }
    const int8_t* q = reinterpret_cast<const int8_t*>(w.data) + e;
    float s = w.scales[n] / 127.0f;
    if (level == 2) decode8_avx512(q, k1 - k0, s, dst);
    else if (level == 1) decode8_avx2(q, k1 - k0, s, dst);
    else decode8_scalar(q, k1 - k0, s, dst);
  }
}

// ---------------------------------------------------------------- tiling

thread_local ScratchBuffer scratch{"quant_linear tile"};

constexpr int64_t kTileFloats = 262144;  // ~1 MiB: a tile stays in L2 between decoding and packing

int64_t round_up(int64_t v, int64_t unit) { return (v + unit - 1) / unit * unit; }

// Rows per tile: enough that sgemm's packing of the other operand is amortized (>= 64 rows),
// small enough to stay near L2, and an even share per thread when there are several tiles.
int64_t tile_rows(int64_t rows, int64_t cols, int threads) {
  int64_t t = std::clamp<int64_t>(kTileFloats / std::max<int64_t>(cols, 1) / 16 * 16, 64, 256);
  int64_t tiles = round_up((rows + t - 1) / t, threads);
  return std::max<int64_t>(round_up((rows + tiles - 1) / tiles, 16), 16);
}

// Runs tile(t, gemm_threads) for every t < tiles. One tile gets all threads (the GEMM threads
// it); several run one per thread at a time, each writing its own columns of y.
template <class F>
void for_each_tile(int64_t tiles, int threads, F tile) {
  if (tiles == 1) return tile(0, threads);
  parallel_for(tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++) tile(t, 1);
  });
}

// Runs columns(k0, k1, gemm_threads) over `parts` disjoint ranges of [0, K) (multiples of 16
// floats, so no two threads share a cache line of dx); one part gets all threads.
template <class F>
void for_each_column_part(int64_t K, int64_t parts, int threads, F columns) {
  if (parts == 1) return columns(0, K, threads);
  int64_t chunk = round_up((K + parts - 1) / parts, 16);
  parallel_for(parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; p++) {
      int64_t k0 = std::min(K, p * chunk), k1 = std::min(K, (p + 1) * chunk);
      if (k0 < k1) columns(k0, k1, 1);
    }
  });
}

thread_local ScratchBuffer strip{"quant_linear decoded rows"};

// y = x Wᵀ by the GEMM with W's panels decoded on the fly (sgemm_pack_b): each panel's rows are decoded
// into an L1-sized strip and packed from there, so W in float32 exists only as the GEMM's packed block
// (a decoded tile beside it cost a pass through L2/L3 and packing x again for every tile).
void forward(const QuantWeight& w, const Mat& x, const Mat& y) {
  const gemm_detail::PackFn pack = gemm_detail::pack_fn();
  const gemm_detail::PackB pack_b = [&](int64_t j0, int64_t cols, int64_t k0, int64_t kc, int nr, float* dst) {
    float* buf = strip.get(size_t(nr * kc));
    for (int64_t c = 0; c < cols; c += nr) {
      const int64_t n = std::min<int64_t>(nr, cols - c);
      decode_tile(w, j0 + c, j0 + c + n, k0, k0 + kc, buf, kc);
      pack(buf, kc, 1, n, kc, nr, dst + c * kc);
    }
  };
  gemm_detail::sgemm_pack_b(num_threads(), x.rows, w.N, w.K, x.f(), x.ld, pack_b, y.f(), y.ld);
}

void backward(const QuantWeight& w, const Mat& dy, const Mat& dx) {
  int64_t M = dy.rows, N = w.N, K = w.K;
  int threads = num_threads();
  // Threads own disjoint column ranges of dx and walk all of W's rows.
  int64_t parts = std::min<int64_t>(threads, std::max<int64_t>(K / 32, 1));
  auto columns = [&](int64_t k0, int64_t k1, int gemm_threads) {
    int64_t kw = k1 - k0, T = tile_rows(N, kw, 1);
    float* buf = scratch.get(size_t(T * kw));
    for (int64_t n0 = 0; n0 < N; n0 += T) {
      int64_t n1 = std::min(N, n0 + T);
      decode_tile(w, n0, n1, k0, k1, buf, kw);
      gemm_detail::sgemm_on(gemm_threads, false, false, M, kw, n1 - n0, 1.0f, dy.f() + n0, dy.ld, buf, kw,
                            n0 == 0 ? 0.0f : 1.0f, dx.f() + k0, dx.ld);
    }
  };
  if (N == 0) {  // dx = dy W with an empty inner dim is zero
    for (int64_t m = 0; m < M; m++) std::fill(dx.f() + m * dx.ld, dx.f() + m * dx.ld + K, 0.0f);
    return;
  }
  for_each_column_part(K, parts, threads, columns);
}

// ---------------------------------------------------------------- half-precision x (bf16/fp16)

// With a bfloat16/float16 x the weight is decoded to x's dtype (each value rounded once, as
// bitsandbytes dequantizes to the activation dtype on GPUs) and multiplied by the half GEMM
// (gemm_half.h: AMX / AVX-512 BF16 / converting), accumulating in float32; y is x's dtype (rounded
// once) or float32 (an inference prefill's float rows multiplied in bf16, ops/fused/quant_linear.ts).
thread_local ScratchBuffer half_tile{"quant_linear half tile"}, half_acc{"quant_linear_backward float32 dx"},
    half_row{"quant_linear decoded row"};

// W[n0:n1, k0:k1] in x's half dtype, row stride *ld. A bf16 weight with bf16 x is used in place;
// anything else is decoded one row at a time through an L1-sized float row, so the float tile
// never goes to memory.
const uint16_t* half_tile_of(const QuantWeight& w, int64_t n0, int64_t n1, int64_t k0, int64_t k1, bool fp16, int64_t* ld) {
  if (w.kind == QuantKind::BF16 && !fp16) {
    *ld = w.K;
    return reinterpret_cast<const uint16_t*>(w.data) + n0 * w.K + k0;
  }
  int64_t kw = k1 - k0;
  *ld = kw;
  float* row = half_row.get(size_t(kw));
  uint16_t* h = reinterpret_cast<uint16_t*>(half_tile.get(size_t(((n1 - n0) * kw + 1) / 2)));
  for (int64_t n = n0; n < n1; n++) {
    if (!fp16 && decode_row_bf16(w, n, k0, k1, h + (n - n0) * kw)) continue;
    decode_tile(w, n, n + 1, k0, k1, row, kw);
    float_to_half(row, kw, fp16, h + (n - n0) * kw);
  }
  return h;
}

void forward_half(const QuantWeight& w, const Mat& x, const Mat& y) {
  int64_t M = x.rows, N = w.N, K = w.K;
  int threads = num_threads();
  int64_t T = tile_rows(N, K, threads), tiles = (N + T - 1) / T;
  char* out = static_cast<char*>(y.p);
  auto tile = [&](int64_t t, int gemm_threads) {
    int64_t n0 = t * T, n1 = std::min(N, n0 + T), ldh = 0;
    const uint16_t* h = half_tile_of(w, n0, n1, 0, K, x.dtype == F16, &ldh);
    hgemm_on(gemm_threads, x.dtype, false, true, M, n1 - n0, K, x.h(), x.ld, h, ldh, false,
             out + n0 * int64_t(dtype_size(y.dtype)), y.dtype, y.ld);
  };
  for_each_tile(tiles, threads, tile);
}

void backward_half(const QuantWeight& w, const Mat& dy, const Mat& dx) {
  int64_t M = dy.rows, N = w.N, K = w.K;
  int threads = num_threads();
  int64_t parts = std::min<int64_t>(threads, std::max<int64_t>(K / 32, 1));
  // Each thread sums its columns of dx over all of W's rows in float32, then rounds them once.
  auto columns = [&](int64_t k0, int64_t k1, int gemm_threads) {
    int64_t kw = k1 - k0, T = tile_rows(N, kw, 1);
    float* acc = half_acc.get(size_t(M * kw));
    for (int64_t n0 = 0; n0 < N; n0 += T) {
      int64_t n1 = std::min(N, n0 + T);
      int64_t ldh = 0;
      const uint16_t* h = half_tile_of(w, n0, n1, k0, k1, dx.dtype == F16, &ldh);
      hgemm_on(gemm_threads, dy.dtype, false, false, M, kw, n1 - n0, dy.h() + n0, dy.ld, h, ldh, n0 > 0, acc, F32, kw);
    }
    for (int64_t m = 0; m < M; m++) float_to_half(acc + m * kw, kw, dx.dtype == F16, dx.h() + m * dx.ld + k0);
  };
  if (N == 0) {  // dx = dy W with an empty inner dim is zero
    for (int64_t m = 0; m < M; m++) std::fill(dx.h() + m * dx.ld, dx.h() + m * dx.ld + K, uint16_t(0));
    return;
  }
  for_each_column_part(K, parts, threads, columns);
}

}  // namespace

KESTREL_KERNEL(quant_linear) {
  const char* k = "quant_linear";
  QuantWeight w = read_weight(args, k);
  View xv = args.view(), yv = args.view();
  const bool int8_activations = args.i64() != 0;  // an inference prefill that may quantize x (quant_gemm_q4, quant_gemv_rows)
  args.done();
  Mat x = read_matrix(k, "x", xv, false), y = read_matrix(k, "out", yv, true);
  if (x.cols != w.K) fail(k, "x " + shape_str(xv) + " has " + std::to_string(x.cols) + " features, the weight takes K=" + std::to_string(w.K));
  if (y.rows != x.rows || y.cols != w.N)
    fail(k, "out " + shape_str(yv) + " must be [" + std::to_string(x.rows) + ", " + std::to_string(w.N) + "]");
  if (y.dtype != x.dtype && !(y.dtype == F32 && x.dtype != F32))
    fail(k, std::string("out is ") + dtype_name(y.dtype) + ", x is " + dtype_name(x.dtype) +
                "; out must be x's dtype (or float32 for a bfloat16/float16 x)");
  if (x.rows == 0 || w.N == 0) return;
  if (x.dtype == F32 && x.rows <= kGemvMaxRows) quant_gemv(w, x.f(), x.ld, x.rows, y.f(), y.ld);
  else if (x.dtype != F32) forward_half(w, x, y);
  else if (!((int8_activations && quant_gemm_q4(w, x.f(), x.ld, x.rows, y.f(), y.ld)) || quant_gemv_rows(w, x.f(), x.ld, x.rows, y.f(), y.ld, int8_activations))) forward(w, x, y);
}

KESTREL_KERNEL(quant_linear_backward) {
  const char* k = "quant_linear_backward";
  QuantWeight w = read_weight(args, k);
  View gv = args.view(), dxv = args.view();
  args.done();
  Mat dy = read_matrix(k, "dy", gv, false), dx = read_matrix(k, "dx", dxv, true);
  if (dy.cols != w.N) fail(k, "dy " + shape_str(gv) + " has " + std::to_string(dy.cols) + " features, the weight gives N=" + std::to_string(w.N));
  if (dx.rows != dy.rows || dx.cols != w.K)
    fail(k, "dx " + shape_str(dxv) + " must be [" + std::to_string(dy.rows) + ", " + std::to_string(w.K) + "]");
  if (dx.dtype != dy.dtype)
    fail(k, std::string("dx is ") + dtype_name(dx.dtype) + ", dy is " + dtype_name(dy.dtype) + "; they must match");
  if (dy.rows == 0 || w.K == 0) return;
  if (dy.dtype == F32) backward(w, dy, dx);
  else backward_half(w, dy, dx);
}

}  // namespace kestrel
