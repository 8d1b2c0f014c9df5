// Block-sparse attention forward and backward on the CPU: flash-style tiles (FlashAttention-2's
// online softmax, backward recomputing p from the saved logsumexp) visiting only the blocks a
// layout keeps (DeepSpeed's sparse attention, Child et al. 2019). The layout arrives as CSR (per
// layout head and query block: ascending key blocks) and CSC (per key block: query blocks);
// consecutive blocks are merged into spans of up to kSpanKeys keys so that local windows become
// one wide tile. Tasks: forward per (batch, head, query block); backward per key block of one
// (batch, kv head) group at a time, over every query head of the group: each task owns its dk/dv
// rows, and dq goes into per-worker partial sums added after the group (no float atomics). The
// reference is src/backend/ref/block_sparse_attention.ts; src/backend/cpu/sparse_attention.ts packs
// the arguments; the tile loops live in block_sparse_tiles.inc, compiled per ISA.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "gemm.h"
#include "kernel_api.h"
#include "simd.h"

namespace kestrel {
namespace {

using gemm_detail::sgemm_on;

constexpr int64_t kSpanKeys = 256;  // keys (or query rows) of one merged span, at least one block

// Sizes, pointers and the layout of one call, validated.
struct SparseProblem {
  int64_t B = 0, H = 0, Hkv = 0, Tq = 0, Tk = 0, hd = 0, hdv = 0, rep = 1, shift = 0;
  int64_t block = 1, nb = 0, layout_heads = 1;
  const float *q = nullptr, *k = nullptr, *v = nullptr;
  const int32_t *rptr = nullptr, *ridx = nullptr, *cptr = nullptr, *cidx = nullptr;
  float scale = 1;
  bool causal = false;

  int64_t span_cap() const { return std::max<int64_t>(1, kSpanKeys / block) * block; }
  // The first query block holding a query (queries are positions shift .. Tk - 1).
  int64_t first_qb() const { return shift / block; }
  int64_t layout_row(int64_t h, int64_t blk) const { return (layout_heads == 1 ? 0 : h) * nb + blk; }
  // Local query rows [i0, i1) of query blocks [qb0, qb1).
  std::pair<int64_t, int64_t> query_rows(int64_t qb0, int64_t qb1) const {
    return {std::max(qb0 * block, shift) - shift, std::min(qb1 * block, Tk) - shift};
  }
  // f(b0, b1) for each run of consecutive blocks [b0, b1) of a compressed row, at most span_cap() tokens.
  template <class F>
  void for_spans(const int32_t* ptr, const int32_t* idx, int64_t row, F&& f) const {
    const int64_t most = span_cap() / block;
    for (int64_t e = ptr[row]; e < ptr[row + 1];) {
      const int64_t b0 = idx[e];
      int64_t b1 = b0 + 1;
      for (e++; e < ptr[row + 1] && idx[e] == b1 && b1 - b0 < most; e++) b1++;
      f(b0, b1);
    }
  }
};

// Workers for n tasks: task(next, w) runs once per worker w < sparse_workers(n), pulling task
// numbers from the shared counter (rows with global blocks cost more); scratch is per worker.
int64_t sparse_workers(int64_t ntasks) { return std::max<int64_t>(1, std::min<int64_t>(num_threads(), ntasks)); }
template <class F>
void run_sparse_tasks(int64_t ntasks, F&& task) {
  if (ntasks <= 0) return;
  std::atomic<int64_t> next{0};
  parallel_for(sparse_workers(ntasks), 1, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; w++) task(next, w);
  });
}

#define KESTREL_ISA_BODY "block_sparse_tiles.inc"
#include "isa_bodies.inc"

// ------------------------------------------------------------------ argument checks

struct Checker {
  const char* kernel;
  [[noreturn]] void fail(const std::string& why) const { throw KernelError(std::string(kernel) + ": " + why); }
  void f32(const char* what, const View& v) const {
    if (v.dtype != F32) fail(std::string(what) + " must be float32, got " + dtype_name(v.dtype) + " " + shape_str(v));
    if (!v.contiguous()) fail(std::string(what) + " " + shape_str(v) + " must be contiguous");
  }
  void shape(const char* what, const View& v, const std::vector<int64_t>& want) const {
    f32(what, v);
    bool ok = v.ndim == int(want.size());
    int d = 0;
    for (int64_t s : want) ok = ok && v.shape[d++] == s;
    if (!ok) fail(std::string(what) + " " + shape_str(v) + " has the wrong shape for q, k, v");
  }
  // A compressed layout: ptr [rows + 1] from 0, non-decreasing, ending at idx's length; each row's
  // entries strictly ascending block numbers below nb.
  void compressed(const char* what, const View& ptr, const View& idx, int64_t rows, int64_t nb) const {
    if (ptr.dtype != I32 || idx.dtype != I32 || !ptr.contiguous() || !idx.contiguous() || ptr.ndim != 1 || idx.ndim != 1)
      fail(std::string(what) + " pointers and indices must be contiguous 1-d int32, got " + shape_str(ptr) + ", " + shape_str(idx));
    if (ptr.shape[0] != rows + 1) fail(std::string(what) + " pointers " + shape_str(ptr) + " must hold " + std::to_string(rows + 1));
    const int32_t *p = ptr.ptr<int32_t>(), *x = idx.ptr<int32_t>();
    if (p[0] != 0 || p[rows] != idx.shape[0]) fail(std::string(what) + " pointers must run from 0 to the index count");
    for (int64_t r = 0; r < rows; r++) {
      if (p[r + 1] < p[r]) fail(std::string(what) + " pointers decrease at row " + std::to_string(r));
      for (int64_t e = p[r]; e < p[r + 1]; e++)
        if (x[e] < 0 || x[e] >= nb || (e > p[r] && x[e] <= x[e - 1]))
          fail(std::string(what) + " row " + std::to_string(r) + ": block " + std::to_string(x[e]) +
               " is out of [0, " + std::to_string(nb) + ") or not ascending");
    }
  }
};

// q, k, v, the CSR (and with `csc` the CSC) layout and the options (BlockSparseOpts in
// src/backend/cpu/sparse_attention.ts's order), validated.
SparseProblem read_problem(const Checker& c, Args& args, bool csc) {
  SparseProblem p;
  const View q = args.view(), k = args.view(), v = args.view();
  const View rp = args.view(), ri = args.view();
  View cp, ci;
  if (csc) cp = args.view(), ci = args.view();
  c.f32("q", q), c.f32("k", k), c.f32("v", v);
  const std::string ctx = "q " + shape_str(q) + ", k " + shape_str(k) + ", v " + shape_str(v);
  if (q.ndim != 4 || k.ndim != 4 || v.ndim != 4) c.fail("q, k, v must be [B, H, T, hd]: " + ctx);
  p.B = q.shape[0], p.H = q.shape[1], p.Tq = q.shape[2], p.hd = q.shape[3];
  p.Hkv = k.shape[1], p.Tk = k.shape[2], p.hdv = v.shape[3];
  if (k.shape[0] != p.B || v.shape[0] != p.B || k.shape[3] != p.hd || v.shape[1] != p.Hkv || v.shape[2] != p.Tk)
    c.fail("q, k, v disagree in batch, heads, length or head dim: " + ctx);
  if (p.Hkv < 1 || p.H % p.Hkv != 0) c.fail("query heads must be a multiple of kv heads: " + ctx);
  if (p.Tq > p.Tk) c.fail("more queries than keys: " + ctx);
  p.rep = p.H / p.Hkv, p.shift = p.Tk - p.Tq;
  const double scale = args.num();
  p.causal = args.flag();
  p.block = args.i64(), p.nb = args.i64(), p.layout_heads = args.i64();
  if (!std::isfinite(scale)) c.fail("scale must be finite");
  if (p.block < 1 || p.nb != (p.Tk + p.block - 1) / p.block)
    c.fail("nBlocks " + std::to_string(p.nb) + " must be ceil(Tk / block) for Tk " + std::to_string(p.Tk) + ", block " + std::to_string(p.block));
  if (p.layout_heads != 1 && p.layout_heads != p.H) c.fail("layout heads must be 1 or " + std::to_string(p.H));
  c.compressed("rows", rp, ri, p.layout_heads * p.nb, p.nb);
  if (csc) c.compressed("cols", cp, ci, p.layout_heads * p.nb, p.nb);
  p.scale = float(scale);
  p.q = q.ptr<float>(), p.k = k.ptr<float>(), p.v = v.ptr<float>();
  p.rptr = rp.ptr<int32_t>(), p.ridx = ri.ptr<int32_t>();
  if (csc) p.cptr = cp.ptr<int32_t>(), p.cidx = ci.ptr<int32_t>();
  return p;
}

}  // namespace

KESTREL_KERNEL(block_sparse_attention) {
  const Checker c{"block_sparse_attention"};
  SparseProblem p = read_problem(c, args, false);
  View out = args.view(), lse = args.view();
  args.done();
  c.shape("out", out, {p.B, p.H, p.Tq, p.hdv});
  c.shape("lse", lse, {p.B, p.H, p.Tq});
  decltype(&isa_scalar::forward) const bodies[] = {isa_scalar::forward, isa_avx2::forward, isa_avx512::forward};
  bodies[simd::level()](p, out.ptr<float>(), lse.ptr<float>());
}

KESTREL_KERNEL(block_sparse_attention_backward) {
  const Checker c{"block_sparse_attention_backward"};
  SparseProblem p = read_problem(c, args, true);
  View out = args.view(), lse = args.view(), dout = args.view();
  View dq = args.view(), dk = args.view(), dv = args.view();
  args.done();
  const std::vector<int64_t> rows{p.B, p.H, p.Tq}, q_like{p.B, p.H, p.Tq, p.hd}, o_like{p.B, p.H, p.Tq, p.hdv};
  const struct { const char* what; const View& v; std::vector<int64_t> shape; } outputs[] = {
      {"out", out, o_like}, {"lse", lse, rows}, {"dout", dout, o_like}, {"dq", dq, q_like},
      {"dk", dk, {p.B, p.Hkv, p.Tk, p.hd}}, {"dv", dv, {p.B, p.Hkv, p.Tk, p.hdv}}};
  for (const auto& o : outputs) c.shape(o.what, o.v, o.shape);
  // by simd::level(): 0 scalar, 1 AVX2, 2 AVX-512
  decltype(&isa_scalar::backward) const bodies[] = {isa_scalar::backward, isa_avx2::backward, isa_avx512::backward};
  bodies[simd::level()](p, out.ptr<float>(), lse.ptr<float>(), dout.ptr<float>(), dq.ptr<float>(), dk.ptr<float>(),
                        dv.ptr<float>());
}

}  // namespace kestrel
