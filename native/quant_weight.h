// A quantized weight W [N, K] (PyTorch's [out, in]) as native/quant.cc reads it from its packed
// arguments (src/backend/kernels.ts QuantWeight documents the formats), shared by the tiled GEMM
// (quant.cc) and the decode GEMV (quant_gemv.cc).
#pragma once
#include <xmmintrin.h>

#include <cstdint>
#include <string>

namespace kestrel {

enum class QuantKind : int { FourBit = 0, Int8 = 1, BF16 = 2 };

struct QuantWeight {
  QuantKind kind = QuantKind::FourBit;
  bool four_bit = true;
  int64_t N = 0, K = 0, block = 0;
  const uint8_t* data = nullptr;  // 4-bit: two codes per byte, high nibble first; int8: int8_t; bf16: uint16_t
  const float* code = nullptr;    // 4-bit: 16 entries
  const float* scales = nullptr;  // float32 absmax per block (4-bit) or SCB per row (int8); none for bf16
  const uint8_t* scale_codes = nullptr;  // double quantization: codes of the absmax values
  const float* nested_absmax = nullptr;
  const float* nested_code = nullptr;
  float nested_offset = 0;
  int64_t nested_block = 1;

  int64_t data_bytes() const { return kind == QuantKind::BF16 ? 2 * N * K : kind == QuantKind::Int8 ? N * K : (N * K + 1) / 2; }

  float block_scale(int64_t b) const {
    if (scale_codes) return nested_code[scale_codes[b]] * nested_absmax[b / nested_block] + nested_offset;
    return scales[b];
  }
};

// A decode GEMV reads W once in long sequential runs. On a server core the hardware prefetcher alone
// keeps too few lines in flight for that: on a 2-vCPU Xeon (Emerald Rapids) the int8 GEMV read 17 GB/s
// where a float32 GEMV, which prefetches, read 27. So the GEMVs also prefetch the line kPrefetchAhead
// bytes past each one they load (never past the weight's end): int8 24, q4 28, bf16 24 GB/s there, and
// batch-1 decode 1.2-1.36x faster (4096 to 16384 bytes ahead measured alike). On Zen 3 the layers'
// small GEMVs (200 KB - 1 MB a call) ran 1-5% faster at 4096 than at 8192 (2048 better still there,
// 64 worse by 2-8%; alternating A/B in one process), since a call's first `ahead` bytes go unprefetched.
constexpr uintptr_t kPrefetchAhead = 4096;
struct WeightPrefetch {
  uintptr_t end;  // hoisted out of the loop: GCC 12 drops a prefetch whose bound it computes in the loop
  explicit WeightPrefetch(const QuantWeight& w) : end(reinterpret_cast<uintptr_t>(w.data) + uintptr_t(w.data_bytes())) {}
  void operator()(const void* p) const {
    const uintptr_t a = reinterpret_cast<uintptr_t>(p) + kPrefetchAhead;
    if (a < end) _mm_prefetch(reinterpret_cast<const char*>(a), _MM_HINT_T0);
  }
};

// y [M, N] = x [M, K] Wᵀ for a few rows (M <= kGemvMaxRows) of float32 x, streaming W once with the
// dequantization in registers (quant_gemv.cc). x rows at stride ldx, y rows at stride ldy.
constexpr int64_t kGemvMaxRows = 8;
void quant_gemv(const QuantWeight& w, const float* x, int64_t ldx, int64_t M, float* y, int64_t ldy);

// The same product with x's rows quantized to int8 per block of 32 (llama.cpp's q8_0) and integer
// dot products (quant_gemv_int8.cc), for int8 weights and q4 weights (the code table q - 8, blocks
// of 32 tiling the rows). Returns false, computing nothing, where the weight or the CPU does not
// take that path (or KESTREL_QUANT_GEMV=float); quant_gemv then keeps x in float32.
bool quant_gemv_int8(const QuantWeight& w, const float* x, int64_t ldx, int64_t M, float* y, int64_t ldy);
// The path quant_gemv_int8 takes: "avx512vnni", "avxvnni", "avx2", "scalar" or "float" (not
// taken); a KESTREL_QUANT_GEMV the CPU cannot run gives its error message instead.
std::string quant_gemv_path_name();

// q4 weights that the integer paths take: llama.cpp q4_0's arithmetic (the code table q - 8, one plain
// float scale per block of 32, blocks tiling the rows).
bool is_q4_0(const QuantWeight& w);
// x [M, K] (rows at stride ldx) quantized as llama.cpp's q8_0, the int8 activations of the integer
// paths: per block of 32 values d = max|x| / 127, q = round-half-even(x / d) in [-127, 127], and
// sum = Σ q. q is [M, blocks * 32] (a row's last partial block zero-padded), d and sums [M, blocks].
// Returns false, leaving the buffers partly written, on a non-finite x.
bool quantize_q8_0(const float* x, int64_t ldx, int64_t M, int64_t K, int8_t* q, float* d, int32_t* sums);

// Where the prefill's integer paths (quant_gemm_q4, quant_gemv_rows' int8 rows) run: the decode GEMV's
// AVX2 integer path, on a CPU without AVX-512 (whose 16-lane SGEMM they were not measured against).
bool avx2_integer_prefill();

// y [M, N] = x [M, K] Wᵀ for q4_0 weights (is_q4_0) and the longer inputs of a prefill (M > kGemvMaxRows)
// with int8 activations, on the AVX2 integer path (quant_gemm_q4.cc). Returns false, computing
// nothing, where the weight, the CPU or KESTREL_QUANT_GEMV (any path but avx2) does not take it.
bool quant_gemm_q4(const QuantWeight& w, const float* x, int64_t ldx, int64_t M, float* y, int64_t ldy);

// y [M, N] = x [M, K] Wᵀ for 9 or more rows of float32 x by the decode GEMV on blocks of kGemvMaxRows
// rows, each block streaming W once, where that beats the float path (quant.cc: the SGEMM, decoding
// all of W into its panels whatever M is): int8 weights up to kInt8RowsMax - 1 rows when x may be
// quantized to int8 (`int8_activations`, the GEMV's integer path on AVX2: there is no int8 x int8 GEMM),
// bf16 weights up to kBf16RowsMax - 1 rows (float x). Measured on Zen 3 (AVX2, 2 cores, [3072, 576]
// weights): int8 74-99 GFLOP/s at 9-32 rows where the float path ran 32-69, the two meeting at 128
// rows (~100); bf16 53-75 at 9-16 rows where it ran 24-42, meeting at 64. CPUs with AVX-512 keep the
// float path (its 16-lane SGEMM was not measured against this). Returns false, computing nothing,
// where it does not apply. A block with a non-finite x computes it in float (IEEE results in its rows).
constexpr int64_t kInt8RowsMax = 128, kBf16RowsMax = 64;
bool quant_gemv_rows(const QuantWeight& w, const float* x, int64_t ldx, int64_t M, float* y, int64_t ldy, bool int8_activations);

// Reads a weight in the order src/backend/cpu/backend.ts packs a QuantWeight (kind, N, K, data,
// code, blockSize, scales, nested...), checking every buffer's dtype and size (quant.cc).
class Args;
QuantWeight read_weight(Args& args, const char* kernel);

}  // namespace kestrel
