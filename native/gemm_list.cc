// The `matmul_list` kernel: many independent 2-D products of different shapes in one parallel
// pass (the grouped GEMM of a mixture-of-experts layer: one product per expert, each over the
// rows routed to it). Each product is cut into row blocks of C sized so that the whole list
// splits into a few tasks per thread; threads take tasks from a shared counter (products differ
// in size, so a static split would leave threads idle) and run each on one thread with the same
// packed GEMM as matmul: sgemm_on for float32 operands (gemm.h), hgemm_on for bfloat16/float16
// operands (gemm_half.h: AMX, AVX-512 BF16 or convert, float32 sums, a float32 or half out), or a
// half a with a float32 b (an expert's float32 master weight under autocast), b rounded to a's
// dtype as it is packed (hgemm_on_float_b: bit for bit the product of b cast first, no half copy).
#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "gemm.h"
#include "gemm_half.h"
#include "kernel_api.h"
#include "matmul_checks.h"

namespace kestrel {
namespace {

struct Product {
  View a, b, out;
  gemm_detail::Inner ia, ib;
  int64_t M, N, K;
};

struct Task {
  const Product* p;
  int64_t row0, rows;
};

// Row blocks per product: about 4 tasks per thread over the list's total work, never below
// 16 rows for float32 (a block must keep the micro-kernel's register tile busy) and 32 for half
// operands (an AMX micro-tile is 32 rows; below 32 rows hgemm leaves AMX for a slower path).
std::vector<Task> split_rows(const std::vector<Product>& products, int threads) {
  double total = 0;
  for (const Product& p : products) total += double(p.M) * double(p.N) * double(std::max<int64_t>(p.K, 1));
  double per_task = std::max(total / (4.0 * threads), 1.0);
  std::vector<Task> tasks;
  for (const Product& p : products) {
    if (p.M == 0 || p.N == 0) continue;
    double row_work = double(p.N) * double(std::max<int64_t>(p.K, 1));
    int64_t min_rows = p.a.dtype == F32 ? 16 : 32;
    int64_t block = std::max<int64_t>(min_rows, int64_t(per_task / row_work));
    for (int64_t r = 0; r < p.M; r += block) tasks.push_back({&p, r, std::min(block, p.M - r)});
  }
  return tasks;
}

void run_task(const Task& t, bool accumulate) {
  const Product& p = *t.p;
  // rows of C are rows of op(A): row r of a row-major A starts at r*lda, of a transposed A at r
  int64_t a_off = p.ia.trans ? t.row0 : t.row0 * p.ia.ld;
  if (p.a.dtype == F32)
    return gemm_detail::sgemm_on(1, p.ia.trans, p.ib.trans, t.rows, p.N, p.K, 1.0f, p.a.ptr<float>() + a_off, p.ia.ld,
                                 p.b.ptr<float>(), p.ib.ld, accumulate ? 1.0f : 0.0f, p.out.ptr<float>() + t.row0 * p.N, p.N);
  char* c = p.out.data + (p.out.offset + t.row0 * p.N) * int64_t(dtype_size(p.out.dtype));
  if (p.b.dtype == F32)
    return hgemm_on_float_b(1, p.a.dtype, p.ia.trans, p.ib.trans, t.rows, p.N, p.K, p.a.ptr<uint16_t>() + a_off, p.ia.ld,
                            p.b.ptr<float>(), p.ib.ld, accumulate, c, p.out.dtype, p.N);
  hgemm_on(1, p.a.dtype, p.ia.trans, p.ib.trans, t.rows, p.N, p.K, p.a.ptr<uint16_t>() + a_off, p.ia.ld,
           p.b.ptr<uint16_t>(), p.ib.ld, accumulate, c, p.out.dtype, p.N);
}

// float32 a, b, out; or a bfloat16/float16 a with b of its dtype or float32, and a float32 out or one of a's dtype.
bool supported_dtypes(const View& a, const View& b, const View& out) {
  if (a.dtype == F32) return b.dtype == F32 && out.dtype == F32;
  return (a.dtype == BF16 || a.dtype == F16) && (b.dtype == a.dtype || b.dtype == F32) && (out.dtype == F32 || out.dtype == a.dtype);
}

}  // namespace

// args: count, accumulate, then count x (a [M, K], b [K, N], out [M, N]) 2-D views (dtypes as
// supported_dtypes; products may differ in dtype); each
// out = a @ b (+ out when accumulate). Outputs must not overlap each other (each is written once).
KESTREL_KERNEL(matmul_list) {
  int64_t count = args.i64();
  bool accumulate = args.flag();
  if (count < 0) throw KernelError("matmul_list: negative product count " + std::to_string(count));
  std::vector<Product> products(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; i++) {
    Product& p = products[size_t(i)];
    p.a = args.view();
    p.b = args.view();
    p.out = args.view();
    std::string which = "matmul_list: product " + std::to_string(i) + ": ";
    if (p.a.ndim != 2 || p.b.ndim != 2 || p.out.ndim != 2)
      throw KernelError(which + "need 2-d a, b, out; got " + shape_str(p.a) + ", " + shape_str(p.b) + ", " + shape_str(p.out));
    if (!supported_dtypes(p.a, p.b, p.out))
      throw KernelError(which + "need float32 a, b, out or a bfloat16/float16 a with b of its dtype or float32 and a float32 out or one of a's dtype; got " +
                        dtype_name(p.a.dtype) + ", " + dtype_name(p.b.dtype) + ", " + dtype_name(p.out.dtype));
    try {
      gemm_detail::check_shapes(p.a, p.b, p.out);
      p.ia = gemm_detail::inner_layout(p.a, "a");
      p.ib = gemm_detail::inner_layout(p.b, "b");
    } catch (const KernelError& e) {
      throw KernelError(which + e.what());
    }
    p.M = p.a.size(0);
    p.K = p.a.size(1);
    p.N = p.b.size(1);
  }
  args.done();
  // a bad KESTREL_BF16_GEMM is an error before any product writes (hgemm_on checks it per call)
  if (std::any_of(products.begin(), products.end(), [](const Product& p) { return p.a.dtype == BF16; })) {
    std::string path = hgemm_path_name(BF16);
    if (path.rfind("error: ", 0) == 0) throw KernelError("matmul_list: " + path.substr(7));
  }
  std::vector<Task> tasks = split_rows(products, num_threads());
  std::atomic<size_t> next{0};
  int workers = int(std::min<size_t>(size_t(num_threads()), tasks.size()));
  parallel_for(workers, 1, [&](int64_t, int64_t) {
    for (size_t i = next++; i < tasks.size(); i = next++) run_task(tasks[i], accumulate);
  });
}

}  // namespace kestrel
