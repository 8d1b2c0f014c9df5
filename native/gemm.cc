// sgemm (gemm.h) and the registered `matmul` kernel: the GotoBLAS/BLIS loop nest over packed
// panels (Goto & van de Geijn, "Anatomy of High-Performance Matrix Multiplication", 2008; BLIS's
// five loops around a micro-kernel), written for row-major C, so the roles of A and B are those
// of BLIS computing C^T = B^T A^T:
//   for ic (mc rows of A, the block lives in L3)  for pc (kc)  pack A block
//     for jc (nc columns of B)  pack B block (kc x nc, lives in L2)
//       for ir (one MR-row A micro-panel, stays in L1)  for jr (NR-column B micro-panels stream from L2)
//         micro-kernel (MR x NR tile of C in registers)
// The micro-kernels and ISA-specific packing live in gemm_avx512.cc / gemm_avx2.cc; this file has
// the scalar fallback, the driver, the thread partition and the batched matmul kernel.
#include "gemm.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "gemm_half.h"
#include "kernel_api.h"
#include "matmul_checks.h"

namespace kestrel {
namespace gemm_detail {
namespace {

// ---------------------------------------------------------------- scalar fallback

constexpr int kScalarMR = 4, kScalarNR = 8;

// Plain C++; the compiler vectorizes the j loops with the baseline SSE2.
void scalar_kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, float alpha, float beta, int mr,
                   int nr) {
  float acc[kScalarMR][kScalarNR] = {};
  for (int64_t k = 0; k < kc; k++, a += kScalarMR, b += kScalarNR)
    for (int i = 0; i < kScalarMR; i++)
      for (int j = 0; j < kScalarNR; j++) acc[i][j] += a[i] * b[j];
  for (int i = 0; i < mr; i++)
    for (int j = 0; j < nr; j++) {
      float* p = c + i * ldc + j;
      *p = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * *p;
    }
}

const KernelSet kScalar = {"scalar", kScalarMR, kScalarNR, 2048, 256, 512, scalar_kernel, nullptr, nullptr, 0, 0};

// ---------------------------------------------------------------- per-thread packing buffers

thread_local ScratchBuffer a_buffer{"sgemm packing"}, b_buffer{"sgemm packing"};

// Sized for the largest blocks gemm_block packs (even_block never exceeds mc, kc, nc) and touched
// when the thread starts: otherwise a process's first large products each grow and fault them in
// (about 750 faults a thread, ~1-2 ms on these VMs).
void warm_packing_buffers() {
  const KernelSet& ks = select_kernels();
  a_buffer.reserve(size_t(ks.mc * ks.kc));
  b_buffer.reserve(size_t(ks.nc * ks.kc));
}
const ThreadWarmup packing_warmup(warm_packing_buffers);

// ---------------------------------------------------------------- the blocked product

struct Gemm {
  const KernelSet* ks;
  const PackB* pack_b;  // B's panels from this callback instead of B (sgemm_pack_b), or null
  int64_t K;
  float alpha, beta;
  // Element (i, k) of op(A) is A[i*a_rs + k*a_ks]; element (j, k) of op(B)^T is B[j*b_rs + k*b_ks].
  const float* A;
  int64_t a_rs, a_ks;
  const float* B;
  int64_t b_rs, b_ks;
  float* C;
  int64_t ldc;
  const float* bias = nullptr;  // N values the first k block's products start from (beta 0)
};

// C rows [i0, i1) x columns [j0, j1) = bias[j0 .. j1) (a bias epilogue's start, in cache just
// before the products accumulate onto it).
void fill_bias(float* C, int64_t ldc, const float* bias, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  for (int64_t i = i0; i < i1; i++) std::copy(bias + j0, bias + j1, C + i * ldc + j0);
}

// C[i0:i1, j0:j1] on the calling thread.
void gemm_block(const Gemm& g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  const KernelSet& ks = *g.ks;
  PackFn pack = ks.pack ? ks.pack : generic_pack;
  int64_t mc_block = even_block(i1 - i0, ks.mc, ks.mr), nc_block = even_block(j1 - j0, ks.nc, ks.nr);
  int64_t kc_block = even_block(g.K, ks.kc, 1);
  float* ap = a_buffer.get(size_t(mc_block * kc_block));
  float* bp = b_buffer.get(size_t(nc_block * kc_block));
  for (int64_t ic = i0; ic < i1; ic += mc_block) {
    int64_t mc = std::min(mc_block, i1 - ic);
    for (int64_t pc = 0; pc < g.K; pc += kc_block) {
      int64_t kc = std::min(kc_block, g.K - pc);
      // later k blocks add to what the first one stored; the first adds to the bias where there is one
      const bool start_bias = pc == 0 && g.bias;
      float beta = pc == 0 && !g.bias ? g.beta : 1.0f;
      pack(g.A + ic * g.a_rs + pc * g.a_ks, g.a_rs, g.a_ks, mc, kc, ks.mr, ap);
      for (int64_t jc = j0; jc < j1; jc += nc_block) {
        int64_t nc = std::min(nc_block, j1 - jc);
        if (g.pack_b) (*g.pack_b)(jc, nc, pc, kc, ks.nr, bp);
        else pack(g.B + jc * g.b_rs + pc * g.b_ks, g.b_rs, g.b_ks, nc, kc, ks.nr, bp);
        for (int64_t ir = 0; ir < mc; ir += ks.mr) {
          int mr = int(std::min<int64_t>(ks.mr, mc - ir));
          if (start_bias) fill_bias(g.C, g.ldc, g.bias, ic + ir, ic + ir + mr, jc, jc + nc);
          for (int64_t jr = 0; jr < nc; jr += ks.nr) {
            int nr = int(std::min<int64_t>(ks.nr, nc - jr));
            ks.kernel(kc, ap + ir * kc, bp + jr * kc, g.C + (ic + ir) * g.ldc + jc + jr, g.ldc, g.alpha, beta, mr, nr);
          }
        }
      }
    }
  }
}

void gemm_threaded(const Gemm& g, int64_t M, int64_t N, int threads) {
  int tm = 1, tn = 1;
  // B from a callback (a decode, sgemm_pack_b) splits columns only: a row split would decode all of B
  // again per thread, where choose_grid prices packing B as a copy
  if (threads > 1 && g.pack_b) tn = int(std::min<int64_t>(threads, (N + g.ks->nr - 1) / g.ks->nr));
  else if (threads > 1) choose_grid(g.ks->mr, g.ks->nr, g.ks->mc, M, N, g.K, threads, &tm, &tn);
  int parts = tm * tn;
  if (parts == 1) return gemm_block(g, 0, M, 0, N);
  int64_t pm = (M + g.ks->mr - 1) / g.ks->mr, pn = (N + g.ks->nr - 1) / g.ks->nr;
  parallel_for(parts, 1, [&](int64_t begin, int64_t end) {
    // Inside another parallel region parallel_for hands us every part: do it as one block.
    if (end - begin == parts) return gemm_block(g, 0, M, 0, N);
    for (int64_t p = begin; p < end; p++) {
      int64_t a = p / tn, b = p % tn;
      int64_t i0 = pm * a / tm * g.ks->mr, i1 = std::min(M, pm * (a + 1) / tm * g.ks->mr);
      int64_t j0 = pn * b / tn * g.ks->nr, j1 = std::min(N, pn * (b + 1) / tn * g.ks->nr);
      if (i0 < i1 && j0 < j1) gemm_block(g, i0, i1, j0, j1);
    }
  });
}

// Few rows: stream B once without packing; threads split the columns in units of 16 to 64 columns,
// sized for about 8 units per thread, so a narrow weight (a GQA k/v projection: 192 columns, three
// 64-column units before) does not leave one of two threads idle a third of the time. A unit is a
// multiple of 16 columns (four 4-row groups of B); each C element is one sum whatever the split.
void gemm_small_m(const Gemm& g, bool transB, int64_t M, int64_t N, int threads) {
  // The small-M kernels take A as a contiguous [M, K] block.
  const float* a = g.A;
  if (g.a_ks != 1 || g.a_rs != g.K) {
    float* buf = a_buffer.get(size_t(M * g.K));
    for (int64_t i = 0; i < M; i++)
      for (int64_t k = 0; k < g.K; k++) buf[i * g.K + k] = g.A[i * g.a_rs + k * g.a_ks];
    a = buf;
  }
  int64_t ldb = transB ? g.b_rs : g.b_ks;
  int64_t width = std::clamp<int64_t>((N / (8 * int64_t(threads)) + 15) / 16 * 16, 16, 64);
  auto cols = [&](int64_t begin, int64_t end) {
    int64_t j0 = begin * width, j1 = std::min(N, end * width);
    g.ks->small_m(transB, M, j1 - j0, g.K, g.alpha, a, g.B + j0 * g.b_rs, ldb, g.beta, g.C + j0, g.ldc);
  };
  int64_t units = (N + width - 1) / width;
  if (threads > 1) parallel_for(units, 1, cols);
  else cols(0, units);
}

void scale_c(int64_t M, int64_t N, float beta, float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; i++) {
    float* c = C + i * ldc;
    if (beta == 0.0f) std::fill(c, c + N, 0.0f);
    else if (beta != 1.0f) for (int64_t j = 0; j < N; j++) c[j] *= beta;
  }
}

}  // namespace

// See PackFn in gemm.h.
void generic_pack(const float* src, int64_t rs, int64_t ks, int64_t rows, int64_t kc, int mr, float* dst) {
  for (int64_t p = 0; p < rows; p += mr, dst += mr * kc, src += mr * rs) {
    int n = int(std::min<int64_t>(mr, rows - p));
    if (ks == 1) {  // walk each source row contiguously
      for (int r = 0; r < n; r++)
        for (int64_t k = 0; k < kc; k++) dst[k * mr + r] = src[r * rs + k];
      for (int r = n; r < mr; r++)
        for (int64_t k = 0; k < kc; k++) dst[k * mr + r] = 0.0f;
    } else {
      for (int64_t k = 0; k < kc; k++)
        for (int r = 0; r < mr; r++) dst[k * mr + r] = r < n ? src[r * rs + k * ks] : 0.0f;
    }
  }
}

// The block size for n items: at most `max` (at least one unit), split into equal blocks so
// that no sliver block is left over, in whole units (micro-panels, so packing fits the buffer).
int64_t even_block(int64_t n, int64_t max, int64_t unit) {
  int64_t units = (n + unit - 1) / unit, max_units = std::max<int64_t>(max / unit, 1);
  int64_t blocks = (units + max_units - 1) / max_units;
  return (units + blocks - 1) / blocks * unit;
}

// Splits C into tm x tn rectangles, one per thread, each packing its own panels. Splitting
// columns makes every thread pack all of A, splitting rows all of B, so pick the grid with the
// least estimated time per thread: padded multiply-adds (at ~32 per cycle) plus packed elements.
void choose_grid(int mr, int nr, int64_t mc, int64_t M, int64_t N, int64_t K, int threads, int* tm, int* tn) {
  int64_t pm = (M + mr - 1) / mr, pn = (N + nr - 1) / nr;
  double best = 0;
  for (int a = 1; a <= threads; a++) {
    if (threads % a) continue;
    int b = threads / a;
    if (a > pm || b > pn) continue;
    double rows = double((pm + a - 1) / a * mr), cols = double((pn + b - 1) / b * nr);
    double packs_b = std::ceil(rows / double(mc));
    double cost = rows * cols * double(K) / 32.0 + (rows + cols * packs_b) * double(K);
    if (best == 0 || cost < best) { best = cost; *tm = a; *tn = b; }
  }
  if (best == 0) { *tm = 1; *tn = 1; }
}

const KernelSet& select_kernels() {
  const CpuFeatures& f = cpu_features();
  if (f.avx512f) return *avx512_kernels();
  if (f.avx2 && f.fma) return *avx2_kernels();
  return kScalar;
}

// See gemm.h.
void sgemm_on(int threads, bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
              int64_t lda, const float* B, int64_t ldb, float beta, float* C, int64_t ldc, const float* bias) {
  if (M < 0 || N < 0 || K < 0)
    throw KernelError("sgemm: negative size M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
  if (bias && beta != 0.0f) throw KernelError("sgemm: a bias with beta " + std::to_string(beta) + " (it replaces C's old values)");
  if (M == 0 || N == 0) return;
  if (K == 0 || alpha == 0.0f) return bias ? fill_bias(C, ldc, bias, 0, M, 0, N) : scale_c(M, N, beta, C, ldc);
  Gemm g{&select_kernels(), nullptr, K, alpha, beta, A, 0, 0, B, 0, 0, C, ldc, bias};
  g.a_rs = transA ? 1 : lda;
  g.a_ks = transA ? lda : 1;
  g.b_rs = transB ? ldb : 1;
  g.b_ks = transB ? 1 : ldb;
  // Tiny products are not worth waking the pool for.
  if (double(M) * double(N) * double(K) < 262144.0) threads = 1;
  if (g.ks->small_m && M <= (transB ? g.ks->small_m_max_nt : g.ks->small_m_max)) {
    if (bias) {  // a few rows: the bias first, then the unpacked kernel adds onto it
      fill_bias(C, ldc, bias, 0, M, 0, N);
      g.beta = 1.0f;
      g.bias = nullptr;
    }
    return gemm_small_m(g, transB, M, N, threads);
  }
  gemm_threaded(g, M, N, threads);
}

// See gemm.h.
void sgemm_pack_b(int threads, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda, const PackB& pack_b, float* C,
                  int64_t ldc) {
  if (M < 0 || N < 0 || K < 0)
    throw KernelError("sgemm_pack_b: negative size M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
  if (M == 0 || N == 0) return;
  if (K == 0) return scale_c(M, N, 0.0f, C, ldc);
  Gemm g{&select_kernels(), &pack_b, K, 1.0f, 0.0f, A, lda, 1, nullptr, 0, 0, C, ldc};
  if (double(M) * double(N) * double(K) < 262144.0) threads = 1;
  gemm_threaded(g, M, N, threads);
}

PackFn pack_fn() {
  const KernelSet& ks = select_kernels();
  return ks.pack ? ks.pack : generic_pack;
}

}  // namespace gemm_detail

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda,
           const float* B, int64_t ldb, float beta, float* C, int64_t ldc) {
  gemm_detail::sgemm_on(num_threads(), transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

// ---------------------------------------------------------------- the matmul kernel

namespace gemm_detail {

Inner inner_layout(const View& v, const char* name) {
  int64_t rows = v.size(-2), cols = v.size(-1), rs = v.stride[v.ndim - 2], cs = v.stride[v.ndim - 1];
  if (cs == 1 || cols == 1) return {false, rows == 1 ? std::max<int64_t>(cols, 1) : rs};
  if (rs == 1 || rows == 1) return {true, cols == 1 ? std::max<int64_t>(rows, 1) : cs};
  throw KernelError(std::string("matmul: ") + name + " " + shape_str(v) + " has strides (" + std::to_string(rs) + ", " +
                    std::to_string(cs) + ") in its last two dims; need one of them to be 1 (row-major or transposed)");
}

}  // namespace gemm_detail

namespace {

std::string strides_str(const View& v) {
  std::string s = "(";
  for (int i = 0; i < v.ndim; i++) s += (i ? "," : "") + std::to_string(v.stride[i]);
  return s + ")";
}

// Whether the byte ranges two non-empty views can address intersect (same storage only;
// views into one arena that do not overlap are fine).
bool overlaps(const View& x, const View& y) {
  if (x.data != y.data || x.numel() == 0 || y.numel() == 0) return false;
  // in bytes: the views may have different dtypes (a half a and b with a float32 out)
  auto first = [](const View& v) { return v.offset * int64_t(dtype_size(v.dtype)); };
  auto last = [](const View& v) {
    int64_t e = v.offset;
    for (int i = 0; i < v.ndim; i++) e += (v.shape[i] - 1) * v.stride[i];
    return (e + 1) * int64_t(dtype_size(v.dtype)) - 1;
  };
  return first(x) <= last(y) && first(y) <= last(x);
}

}  // namespace

void gemm_detail::check_shapes(const View& a, const View& b, const View& out) {
  bool f32 = a.dtype == F32 && b.dtype == F32 && out.dtype == F32;
  // a float32 b with a half a is rounded to a's dtype while packed (hgemm_on_float_b)
  bool half = (a.dtype == BF16 || a.dtype == F16) && (b.dtype == a.dtype || b.dtype == F32) &&
              (out.dtype == F32 || out.dtype == a.dtype);
  if (!f32 && !half)
    throw KernelError(std::string("matmul: dtype a=") + dtype_name(a.dtype) + " b=" + dtype_name(b.dtype) +
                      " out=" + dtype_name(out.dtype) +
                      "; need all float32, or bfloat16/float16 a with b of a's dtype or float32 (rounded to a's) and a "
                      "float32 out or one of a's dtype");
  std::string shapes = "a " + shape_str(a) + ", b " + shape_str(b) + ", out " + shape_str(out);
  if (a.ndim < 2 || a.ndim != b.ndim || a.ndim != out.ndim)
    throw KernelError("matmul: need equal ranks >= 2, got " + shapes);
  for (int d = 0; d < a.ndim - 2; d++)
    if (a.shape[d] != out.shape[d] || b.shape[d] != out.shape[d])
      throw KernelError("matmul: batch dims differ (broadcast before calling): " + shapes);
  if (a.size(-1) != b.size(-2)) throw KernelError("matmul: inner sizes differ (K): " + shapes);
  if (a.size(-2) != out.size(-2) || b.size(-1) != out.size(-1))
    throw KernelError("matmul: out shape does not match [..., M, N]: " + shapes);
  if (!out.contiguous()) throw KernelError("matmul: out must be contiguous, got " + shape_str(out) + " strides " + strides_str(out));
  if (overlaps(out, a) || overlaps(out, b))
    throw KernelError("matmul: out " + shape_str(out) + " overlaps an input in memory; write to a fresh tensor");
}

namespace {

// When b is the same matrix for every batch (strides 0) and a's batch and row dims step
// through memory evenly, the batch folds into M: one [batch*M, K] x [K, N] product (a Linear).
bool fold_rows(const View& a, const View& b, int64_t* lda) {
  int nb = a.ndim - 2;
  for (int d = 0; d < nb; d++)
    if (b.shape[d] != 1 && b.stride[d] != 0) return false;
  if (a.size(-1) != 1 && a.stride[a.ndim - 1] != 1) return false;
  int64_t row = -1, span = 1;  // stride of one folded row, rows covered so far
  for (int d = a.ndim - 2; d >= 0; d--) {
    if (a.shape[d] == 1) continue;
    if (row < 0) row = a.stride[d];
    else if (a.stride[d] != row * span) return false;
    span *= a.shape[d];
  }
  *lda = row < 0 ? std::max<int64_t>(a.size(-1), 1) : row;
  return true;
}

}  // namespace

// out [M, N] = a [M, K] @ b [K, N] + bias [N], float32 (Kernels.matmulBias): the bias is written into
// each block of out just before the block's first products add onto it, while it is in cache,
// instead of a pass over all of out first (src/ops/fused/linear.ts's other way).
KESTREL_KERNEL(matmul_bias) {
  View a = args.view(), b = args.view(), bias = args.view(), out = args.view();
  args.done();
  gemm_detail::check_shapes(a, b, out);
  if (a.dtype != F32 || b.dtype != F32 || out.dtype != F32 || bias.dtype != F32 || a.ndim != 2)
    throw KernelError(std::string("matmul_bias: need 2-d float32 a, b, out and a float32 bias; got ") + dtype_name(a.dtype) + " " + shape_str(a) + ", " +
                      dtype_name(b.dtype) + " " + shape_str(b) + ", " + dtype_name(bias.dtype) + " bias " + shape_str(bias));
  if (bias.ndim != 1 || bias.shape[0] != out.size(-1) || !bias.contiguous())
    throw KernelError("matmul_bias: bias " + shape_str(bias) + " must be contiguous [" + std::to_string(out.size(-1)) + "] for out " + shape_str(out));
  if (overlaps(out, bias)) throw KernelError("matmul_bias: out " + shape_str(out) + " overlaps the bias; write to a fresh tensor");
  gemm_detail::Inner ia = gemm_detail::inner_layout(a, "a"), ib = gemm_detail::inner_layout(b, "b");
  gemm_detail::sgemm_on(num_threads(), ia.trans, ib.trans, a.size(0), b.size(1), a.size(1), 1.0f, a.ptr<float>(), ia.ld, b.ptr<float>(),
                        ib.ld, 0.0f, out.ptr<float>(), out.size(1), bias.ptr<float>());
}

KESTREL_KERNEL(matmul) {
  View a = args.view(), b = args.view(), out = args.view();
  bool accumulate = args.flag();
  args.done();
  gemm_detail::check_shapes(a, b, out);
  gemm_detail::Inner ia = gemm_detail::inner_layout(a, "a"), ib = gemm_detail::inner_layout(b, "b");
  int64_t M = a.size(-2), K = a.size(-1), N = b.size(-1), batch = out.numel() / std::max<int64_t>(M * N, 1);
  if (out.numel() == 0) return;
  float beta = accumulate ? 1.0f : 0.0f;
  // One product: a, b, out offset by oa, ob, oc elements (float32 through sgemm; bfloat16/float16
  // operands through hgemm, gemm_half.h, into a float32 out or one of their dtype).
  auto product = [&](int threads, int64_t rows, bool ta, int64_t lda, int64_t oa, int64_t ob, int64_t oc) {
    if (a.dtype == F32)
      return gemm_detail::sgemm_on(threads, ta, ib.trans, rows, N, K, 1.0f, a.ptr<float>() + oa, lda, b.ptr<float>() + ob,
                                   ib.ld, beta, out.ptr<float>() + oc, N);
    char* c = out.data + (out.offset + oc) * int64_t(dtype_size(out.dtype));
    if (b.dtype == F32)
      return hgemm_on_float_b(threads, a.dtype, ta, ib.trans, rows, N, K, a.ptr<uint16_t>() + oa, lda, b.ptr<float>() + ob,
                              ib.ld, accumulate, c, out.dtype, N);
    hgemm_on(threads, a.dtype, ta, ib.trans, rows, N, K, a.ptr<uint16_t>() + oa, lda, b.ptr<uint16_t>() + ob, ib.ld,
             accumulate, c, out.dtype, N);
  };
  int64_t lda = 0;
  if (!ia.trans && fold_rows(a, b, &lda)) return product(num_threads(), batch * M, false, lda, 0, 0, 0);
  // Batch offsets of a and b by walking the batch index like an odometer.
  int nb = a.ndim - 2;
  auto offsets = [&](int64_t t, int64_t* oa, int64_t* ob) {
    *oa = *ob = 0;
    for (int d = nb - 1; d >= 0; d--) {
      int64_t i = t % a.shape[d];
      t /= a.shape[d];
      *oa += i * a.stride[d];
      *ob += i * b.stride[d];
    }
  };
  auto one = [&](int64_t t, int threads) {
    int64_t oa, ob;
    offsets(t, &oa, &ob);
    product(threads, M, ia.trans, ia.ld, oa, ob, t * M * N);
  };
  // Many small products (attention heads): one product per thread; otherwise thread each one.
  if (batch >= num_threads() && double(M) * double(N) * double(K) < 4.0e6) {
    parallel_for(batch, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; t++) one(t, 1);
    });
  } else {
    for (int64_t t = 0; t < batch; t++) one(t, num_threads());
  }
}

}  // namespace kestrel
