// Operand checks shared by the matmul kernel (gemm.cc) and the batched-list kernel
// (gemm_list.cc): how a view's inner matrix reads as a GEMM operand, and the shape/dtype rules.
#pragma once
#include <cstdint>

#include "kernel_api.h"

namespace kestrel {
namespace gemm_detail {

// The inner matrix of a [..., R, S] view as sgemm sees it: row-major with leading dimension
// ld, or the transpose of a row-major [S, R] matrix. Size-1 dims may carry any stride.
struct Inner {
  bool trans;
  int64_t ld;
};
Inner inner_layout(const View& v, const char* name);

// a [..., M, K] @ b [..., K, N] -> out [..., M, N]: equal ranks and batch dims, float32 (or half
// a/b), out contiguous and not overlapping a or b; throws KernelError naming the shapes.
void check_shapes(const View& a, const View& b, const View& out);

}  // namespace gemm_detail
}  // namespace kestrel
