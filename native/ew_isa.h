// The per-ISA span functions of the elementwise, copy and reduce kernels: contiguous loops
// compiled three times (ew_sse2.cc baseline, ew_avx2.cc, ew_avx512.cc, each under its own
// #pragma GCC target) and picked at run time by cpu_features(), so KESTREL_SIMD=scalar|avx2
// forces a lower level. The strided iteration, validation and threading live in the
// kernel files (elementwise.cc, copy.cc, reduce.cc) and call these on contiguous runs.
#pragma once
#include <cstdint>

#include "kernel_api.h"

namespace kestrel {
namespace ew {

// Op codes: the index of the name in src/backend/kernels.ts (UNARY_OPS, ARITH_OPS + COMPARE_OPS, REDUCE_OPS).
enum UnaryOp {
  NEG, EXP, LOG, SQRT, RSQRT, ABS, TANH, SIGMOID, RELU, SILU, GELU_TANH, GELU_ERF, SIN, COS, FLOOR, SIGN,
  RECIPROCAL, POW_SCALAR, CLAMP, kNumUnary
};
enum BinaryOp { ADD, SUB, MUL, DIV, POW, MAXIMUM, MINIMUM, EQ, NE, LT, LE, GT, GE, kNumBinary };
enum ReduceOp { SUM, MAX, MIN, kNumReduce };
constexpr int kFirstCompare = EQ;

extern const char* const kUnaryNames[kNumUnary];
extern const char* const kBinaryNames[kNumBinary];

// Compute dtypes of the arithmetic kernels, as table slots.
enum Slot { S_F32, S_F64, S_I32, S_I64, kNumSlots };
inline int slot_of(int dtype) {
  switch (dtype) {
    case F32: return S_F32;
    case F64: return S_F64;
    case I32: return S_I32;
    case I64: return S_I64;
  }
  return -1;
}

// `stream`: the output is large (kStreamBytes), so float spans store it non-temporally.
// y[i] = f(x[i]) for i < n, contiguous.
using UnaryFn = void (*)(const void* x, void* y, int64_t n, double p0, double p1, bool stream);
// dx[i] = dy[i] * f'(x[i]), contiguous.
using UnaryGradFn = void (*)(const void* x, const void* dy, void* dx, int64_t n, double p0, double p1, bool stream);
// out[i] = a[i] op b[i]; variant 0: both contiguous, 1: b is one scalar, 2: a is one scalar.
using BinaryFn = void (*)(const void* a, const void* b, void* out, int64_t n, bool stream);

// Outputs of at least this many bytes are written with non-temporal stores: they cannot stay in
// the 2 x 4 MB of L2 anyway, and streaming saves the read-for-ownership of every line.
constexpr int64_t kStreamBytes = int64_t(16) << 20;
// Runs shorter than this never stream (their partial lines would cost more than they save).
constexpr int64_t kStreamMinRun = 4096;
// Reduction accumulators: sum of f32/f64 in double, of i64 in int64; max/min in the element
// type (NaN, once seen, stays). row: *acc = acc op x[0..n); cols: acc[j] = acc[j] op x[j].
using ReduceFn = void (*)(const void* x, int64_t n, void* acc);
// Contiguous conversion of n elements.
using ConvertFn = void (*)(const void* src, void* dst, int64_t n);
// dst[i * ds + j] = src[j * ss + i] for i < ni, j < nj, 4-byte elements (a transposed copy).
using TransposeFn = void (*)(const void* src, int64_t ss, void* dst, int64_t ds, int64_t ni, int64_t nj);

struct IsaTable {
  const char* name;
  UnaryFn unary[kNumSlots][kNumUnary];      // null where the dtype does not support the op
  UnaryGradFn unary_grad[2][kNumUnary];     // f32, f64
  BinaryFn binary[kNumSlots][kNumBinary][3];
  ReduceFn reduce_row[kNumSlots][kNumReduce];  // null: sum of i32 (the op layer sums ints as i64)
  ReduceFn reduce_cols[kNumSlots][kNumReduce];
  ConvertFn f32_to_f16, f16_to_f32, f32_to_bf16, bf16_to_f32;
  TransposeFn transpose32;
};

const IsaTable& isa_sse2();
const IsaTable& isa_avx2();
const IsaTable& isa_avx512();
// The best level cpu_features() allows (KESTREL_SIMD lowers it).
const IsaTable& isa();

}  // namespace ew
}  // namespace kestrel
