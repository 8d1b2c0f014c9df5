// GEMM with bfloat16 / float16 operands and float32 accumulation for the CPU backend's `matmul`
// (C = op(A) op(B) (+ C), C float32 or the operands' dtype, rounded once at the end). It runs
// sgemm's loop nest (gemm.cc) over panels packed by one of three paths, picked per product from
// the CPU's features and the product's shape (KESTREL_BF16_GEMM=amx|avx512bf16|convert forces one;
// see choose_path in gemm_half.cc for the rule and the measurements behind it):
//   amx        AMX-BF16 tiles, 32x32 of C per micro-kernel (gemm_amx.cc)
//   avx512bf16 vdpbf16ps on k-pairs, 14x32 of C per micro-kernel (gemm_bf16.cc)
//   convert    operands widened to float32 while packing, then sgemm's own micro-kernel (gemm_half.cc);
//              every CPU, and the only path for float16
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace kestrel {

// C[M,N] = op(A) op(B) (+ C when accumulate), A and B of `dtype` (BF16 or F16) with sgemm's
// layout rules (gemm.h); C row-major with leading dimension ldc, float32 or `dtype` (c_dtype).
// Products are accumulated in float32 and a half C is rounded once (nearest even). On at most
// `threads` threads. Throws KernelError when KESTREL_BF16_GEMM names a path this CPU lacks.
void hgemm_on(int threads, int dtype, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const uint16_t* A,
              int64_t lda, const uint16_t* B, int64_t ldb, bool accumulate, void* C, int c_dtype, int64_t ldc);

// As hgemm_on with a float32 B, rounded to `dtype` (nearest even, by the cast kernels' own
// conversion) block by block as it is packed: equal bit for bit to casting B to `dtype` first and
// calling hgemm_on, without that half copy of B or the pass that writes it. For a float32 weight
// multiplied under autocast (ops/fused/recast_linear.ts), forward and backward.
void hgemm_on_float_b(int threads, int dtype, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const uint16_t* A,
                      int64_t lda, const float* B, int64_t ldb, bool accumulate, void* C, int c_dtype, int64_t ldc);

// The path a large product of `dtype` takes now ("amx", "avx512bf16", "convert"), or an error
// text when KESTREL_BF16_GEMM forces one the CPU lacks; for `kestrel doctor` (addon.info()).
std::string hgemm_path_name(int dtype);

// n 16-bit values (float16 when fp16, else bfloat16) to float32 and back (round to nearest even,
// as f32_to_bf16 / f32_to_f16), vectorized for the CPU's SIMD level; for kernels that feed hgemm.
void half_to_float(const uint16_t* src, int64_t n, bool fp16, float* dst);
void float_to_half(const float* src, int64_t n, bool fp16, uint16_t* dst);

namespace gemm_detail {

// Packs rows x kc of a 16-bit matrix (element (r, k) at src[r*rs + k*ks]) into panels of mr
// rows each, k zero-padded to kcp (a multiple of the path's k unit) and rows to a multiple of mr,
// in the layout the path's micro-kernel reads. `fp16` tells which 16-bit format src holds.
using HalfPackFn = void (*)(const uint16_t* src, int64_t rs, int64_t ks, int64_t rows, int64_t kc, int64_t kcp,
                            int mr, bool fp16, void* dst);

// One mr x nr tile of C (float32, leading dimension ldc) from packed panels over kcp (padded) k:
// C = acc, or C += acc when add; only the first mr' x nr' (the arguments mr, nr) are written.
using HalfKernelFn = void (*)(int64_t kcp, const void* a, const void* b, float* c, int64_t ldc, bool add, int mr,
                              int nr);

// As HalfPackFn from a float32 source, each value rounded to bf16 (nearest even, as f32_to_bf16) as
// it is packed: the panels pack_b gives for that source cast first, bit for bit, in one pass.
using HalfPackFloatFn = void (*)(const float* src, int64_t rs, int64_t ks, int64_t rows, int64_t kc, int64_t kcp, int mr,
                                 void* dst);

struct HalfPath {
  const char* name;
  int mr, nr;            // micro-tile of C
  int kunit;             // packed k is a multiple of this (1; 2 for k-pairs; 32 for AMX tiles)
  int64_t mc, kc, nc;    // cache blocks, as sgemm's (gemm.cc)
  size_t elem;           // bytes per packed element (4 after conversion, 2 for bf16)
  HalfPackFn pack_a, pack_b;
  HalfKernelFn kernel;
  void (*enter)();       // per-thread set-up before a block's kernels (AMX tile config); may be null
  void (*leave)();       // and its release; may be null
  HalfPackFloatFn pack_b_float = nullptr;  // a float32 B rounded to bf16 while packed; null: round into a staging block first
};

const HalfPath* avx512bf16_path();  // gemm_bf16.cc
const HalfPath* amx_path();         // gemm_amx.cc; null when Linux refuses the tile data
// Packs bf16 rows x kc into k-pair panels: the 32-bit pair (k, k+1) of row r at word
// (k/2)*mr + r of its panel (vdpbf16ps's operand order; also AMX's B tile layout for mr = 16/32).
void pack_pairs(const uint16_t* src, int64_t rs, int64_t ks, int64_t rows, int64_t kc, int64_t kcp, int mr,
                bool fp16, void* dst);
// pack_pairs from a float32 source rounded to bf16 on the way (HalfPackFloatFn).
void pack_pairs_float(const float* src, int64_t rs, int64_t ks, int64_t rows, int64_t kc, int64_t kcp, int mr, void* dst);

}  // namespace gemm_detail
}  // namespace kestrel
