// The half-precision GEMM driver (gemm_half.h): sgemm's loop nest (gemm.cc) over panels packed
// by the chosen path, a float32 C throughout, and the convert path, which widens bf16/fp16 to
// float32 while packing (half the operand bytes of an sgemm, then sgemm's own packing and
// micro-kernel). A half C is computed in a float32 buffer: each thread widens its block of C
// before the first k block (accumulate) and rounds it once after the last, while it is in cache.
#include "gemm_half.h"

#include <cpuid.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ew_isa.h"
#include "gemm.h"
#include "kernel_api.h"

namespace kestrel {
namespace gemm_detail {
namespace {

// ---------------------------------------------------------------- 16-bit <-> float32 rows

// The elementwise kernels' conversions (ew_convert_impl.h, at the SIMD level cpu_features()
// allows): nearest even, NaN kept quiet with its sign, as runtime.cc's scalar ones.
void widen(const uint16_t* s, int64_t n, bool fp16, float* d) {
  const ew::IsaTable& t = ew::isa();
  (fp16 ? t.f16_to_f32 : t.bf16_to_f32)(s, d, n);
}

void narrow(const float* s, int64_t n, bool fp16, uint16_t* d) {
  const ew::IsaTable& t = ew::isa();
  (fp16 ? t.f32_to_f16 : t.f32_to_bf16)(s, d, n);
}

// ---------------------------------------------------------------- the convert path

thread_local ScratchBuffer stage_buffer{"half gemm staging"};
MicroKernel float_kernel = nullptr;
PackFn float_pack = nullptr;

// Widens the rows x kc block into a float32 staging block in the source's own orientation
// (rows contiguous along k, or along the rows), then packs it with sgemm's packing routine.
void convert_pack(const uint16_t* src, int64_t rs, int64_t ks, int64_t rows, int64_t kc, int64_t, int mr, bool fp16,
                  void* dst) {
  float* st = stage_buffer.get(size_t(rows * kc));
  if (ks == 1) {
    for (int64_t r = 0; r < rows; r++) widen(src + r * rs, kc, fp16, st + r * kc);
    return float_pack(st, kc, 1, rows, kc, mr, static_cast<float*>(dst));
  }
  if (rs == 1) {
    for (int64_t k = 0; k < kc; k++) widen(src + k * ks, rows, fp16, st + k * rows);
    return float_pack(st, 1, rows, rows, kc, mr, static_cast<float*>(dst));
  }
  for (int64_t r = 0; r < rows; r++)
    for (int64_t k = 0; k < kc; k++) st[r * kc + k] = fp16 ? f16_to_f32(src[r * rs + k * ks]) : bf16_to_f32(src[r * rs + k * ks]);
  float_pack(st, kc, 1, rows, kc, mr, static_cast<float*>(dst));
}

void convert_kernel(int64_t kc, const void* a, const void* b, float* c, int64_t ldc, bool add, int mr, int nr) {
  float_kernel(kc, static_cast<const float*>(a), static_cast<const float*>(b), c, ldc, 1.0f, add ? 1.0f : 0.0f, mr, nr);
}

const HalfPath* convert_path() {
  static const HalfPath path = [] {
    const KernelSet& ks = select_kernels();
    float_kernel = ks.kernel;
    float_pack = ks.pack ? ks.pack : generic_pack;
    return HalfPath{"convert", ks.mr, ks.nr, 1, ks.mc, ks.kc, ks.nc, 4, convert_pack, convert_pack, convert_kernel,
                    nullptr, nullptr};
  }();
  return &path;
}

// ---------------------------------------------------------------- choosing a path

// KESTREL_BF16_GEMM's path, or null for the automatic choice; a path the CPU lacks is an error.
const HalfPath* forced_path() {
  const char* env = std::getenv("KESTREL_BF16_GEMM");
  if (!env || !*env || std::string(env) == "auto") return nullptr;
  std::string s(env);
  if (s == "convert") return convert_path();
  if (s == "avx512bf16") {
    if (!cpu_features().avx512bf16)
      throw KernelError("KESTREL_BF16_GEMM=avx512bf16: this CPU (or KESTREL_SIMD) lacks avx512_bf16/avx512bw");
    return avx512bf16_path();
  }
  if (s == "amx") {
    if (!cpu_features().amx_bf16) throw KernelError("KESTREL_BF16_GEMM=amx: this CPU (or KESTREL_SIMD) lacks amx_bf16/amx_tile");
    if (!amx_path()) throw KernelError("KESTREL_BF16_GEMM=amx: Linux refused the AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM)");
    return amx_path();
  }
  throw KernelError("KESTREL_BF16_GEMM=" + s + ": expected amx, avx512bf16, convert or auto");
}

// Whether vdpbf16ps outruns sgemm's FMAs. On the Intel Xeon with AMX this was measured on (2
// threads, bench/bf16_gemm.ts) it issues once per cycle, half the FMA rate for the same
// multiply-adds: 75-99 GFLOP/s against the convert path's 129-165, so Intel CPUs convert when
// they cannot use AMX. AMD's Zen 4 / Zen 5 run it at the FMA rate with twice the multiply-adds
// per instruction: on a 2-core Zen 4 EPYC a 1024^3 bf16 product ran at 423 GFLOP/s against
// sgemm's ~217 (smol135m's M = 256 training shapes 330-400).
bool dpbf16_beats_fma() {
  static const bool amd = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    __get_cpuid(0, &a, &b, &c, &d);
    return b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163;  // "AuthenticAMD" in EBX, EDX, ECX
  }();
  return amd;
}

const HalfPath* choose_path(int dtype, int64_t M, int64_t N, int64_t K) {
  if (dtype == F16) return convert_path();  // no float32-accumulating fp16 dot product below AMX-FP16
  if (const HalfPath* p = forced_path()) return p;
  // AMX pads every product to 32 x 32 x 32 tiles: below that a tile is mostly zeros.
  const HalfPath* amx = amx_path();
  if (amx && M >= 32 && N >= 32 && K >= 32) return amx;
  if (cpu_features().avx512bf16 && dpbf16_beats_fma()) return avx512bf16_path();
  return convert_path();
}

// ---------------------------------------------------------------- the blocked product

thread_local ScratchBuffer a_buffer{"half gemm packing"}, b_buffer{"half gemm packing"}, c_buffer{"half gemm float32 C"},
    round_buffer{"half gemm rounded float32 B"};

struct HGemm {
  const HalfPath* path;
  bool fp16;
  int64_t K;
  // Element (i, k) of op(A) is A[i*a_rs + k*a_ks]; element (j, k) of op(B)^T is B[j*b_rs + k*b_ks].
  const uint16_t* A;
  int64_t a_rs, a_ks;
  const void* B;  // uint16_t of the operands' dtype, or float32 when b_float (rounded while packing)
  int64_t b_rs, b_ks;
  bool b_float;
  float* C;  // float32 accumulator: the caller's C, or the buffer behind a half one
  int64_t ldc;
  bool accumulate;
  uint16_t* half;  // the half C (null: C is the result), leading dimension ld_half
  int64_t ld_half;
};

// The half operand pack_b reads for B's nc x kc block at (jc, pc): B itself, or a float32 B's block
// rounded into a staging block (at most nc x kc, in L2 while the pack reads it) in B's own
// orientation, so the path's pack routine and micro-kernel are the ones a half B takes.
struct HalfBlock {
  const uint16_t* src;
  int64_t rs, ks;
};
HalfBlock half_b_block(const HGemm& g, int64_t jc, int64_t nc, int64_t pc, int64_t kc) {
  if (!g.b_float) return {static_cast<const uint16_t*>(g.B) + jc * g.b_rs + pc * g.b_ks, g.b_rs, g.b_ks};
  const float* src = static_cast<const float*>(g.B) + jc * g.b_rs + pc * g.b_ks;
  uint16_t* st = reinterpret_cast<uint16_t*>(round_buffer.get(size_t((nc * kc + 1) / 2)));
  if (g.b_ks == 1) {
    for (int64_t j = 0; j < nc; j++) narrow(src + j * g.b_rs, kc, g.fp16, st + j * kc);
    return {st, kc, 1};
  }
  if (g.b_rs == 1) {
    for (int64_t k = 0; k < kc; k++) narrow(src + k * g.b_ks, nc, g.fp16, st + k * nc);
    return {st, 1, nc};
  }
  for (int64_t j = 0; j < nc; j++)
    for (int64_t k = 0; k < kc; k++) {
      float v = src[j * g.b_rs + k * g.b_ks];
      st[j * kc + k] = g.fp16 ? f32_to_f16(v) : f32_to_bf16(v);
    }
  return {st, kc, 1};
}

int64_t round_up(int64_t v, int64_t unit) { return (v + unit - 1) / unit * unit; }

void* packing(ScratchBuffer& buf, int64_t elems, size_t elem) {
  return buf.get(size_t((elems * int64_t(elem) + 3) / 4));
}

// C[i0:i1, j0:j1] on the calling thread, as gemm.cc's gemm_block.
void hgemm_block(const HGemm& g, int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
  const HalfPath& p = *g.path;
  int64_t mc_block = even_block(i1 - i0, p.mc, p.mr), nc_block = even_block(j1 - j0, p.nc, p.nr);
  int64_t kc_block = even_block(g.K, p.kc, p.kunit), kcp_max = round_up(kc_block, p.kunit);
  char* ap = static_cast<char*>(packing(a_buffer, mc_block * kcp_max, p.elem));
  char* bp = static_cast<char*>(packing(b_buffer, nc_block * kcp_max, p.elem));
  if (p.enter) p.enter();
  struct Leave {  // tiles are released even when a pack routine throws
    void (*f)();
    ~Leave() { if (f) f(); }
  } leave{p.leave};
  for (int64_t ic = i0; ic < i1; ic += mc_block) {
    int64_t mc = std::min(mc_block, i1 - ic);
    for (int64_t pc = 0; pc < g.K; pc += kc_block) {
      int64_t kc = std::min(kc_block, g.K - pc), kcp = round_up(kc, p.kunit);
      bool first = pc == 0, last = pc + kc >= g.K;
      p.pack_a(g.A + ic * g.a_rs + pc * g.a_ks, g.a_rs, g.a_ks, mc, kc, kcp, p.mr, g.fp16, ap);
      for (int64_t jc = j0; jc < j1; jc += nc_block) {
        int64_t nc = std::min(nc_block, j1 - jc);
        if (first && g.half && g.accumulate)
          for (int64_t i = ic; i < ic + mc; i++) widen(g.half + i * g.ld_half + jc, nc, g.fp16, g.C + i * g.ldc + jc);
        if (g.b_float && !g.fp16 && p.pack_b_float) {
          p.pack_b_float(static_cast<const float*>(g.B) + jc * g.b_rs + pc * g.b_ks, g.b_rs, g.b_ks, nc, kc, kcp, p.nr, bp);
        } else {
          HalfBlock b = half_b_block(g, jc, nc, pc, kc);
          p.pack_b(b.src, b.rs, b.ks, nc, kc, kcp, p.nr, g.fp16, bp);
        }
        bool add = !first || g.accumulate;
        for (int64_t ir = 0; ir < mc; ir += p.mr) {
          int mr = int(std::min<int64_t>(p.mr, mc - ir));
          for (int64_t jr = 0; jr < nc; jr += p.nr) {
            int nr = int(std::min<int64_t>(p.nr, nc - jr));
            p.kernel(kcp, ap + size_t(ir * kcp) * p.elem, bp + size_t(jr * kcp) * p.elem, g.C + (ic + ir) * g.ldc + jc + jr,
                     g.ldc, add, mr, nr);
          }
        }
        if (last && g.half)
          for (int64_t i = ic; i < ic + mc; i++) narrow(g.C + i * g.ldc + jc, nc, g.fp16, g.half + i * g.ld_half + jc);
      }
    }
  }
}

// As gemm.cc's gemm_threaded: one rectangle of C per thread.
void hgemm_threaded(const HGemm& g, int64_t M, int64_t N, int threads) {
  const HalfPath& p = *g.path;
  int tm = 1, tn = 1;
  if (threads > 1) choose_grid(p.mr, p.nr, p.mc, M, N, g.K, threads, &tm, &tn);
  int parts = tm * tn;
  if (parts == 1) return hgemm_block(g, 0, M, 0, N);
  int64_t pm = (M + p.mr - 1) / p.mr, pn = (N + p.nr - 1) / p.nr;
  parallel_for(parts, 1, [&](int64_t begin, int64_t end) {
    if (end - begin == parts) return hgemm_block(g, 0, M, 0, N);  // nested in a parallel region
    for (int64_t q = begin; q < end; q++) {
      int64_t a = q / tn, b = q % tn;
      int64_t i0 = pm * a / tm * p.mr, i1 = std::min(M, pm * (a + 1) / tm * p.mr);
      int64_t j0 = pn * b / tn * p.nr, j1 = std::min(N, pn * (b + 1) / tn * p.nr);
      if (i0 < i1 && j0 < j1) hgemm_block(g, i0, i1, j0, j1);
    }
  });
}

}  // namespace
}  // namespace gemm_detail

namespace gemm_detail {
namespace {

// hgemm_on and hgemm_on_float_b: B of the operands' dtype, or float32 when b_float.
void hgemm_any_b(int threads, int dtype, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const uint16_t* A,
                 int64_t lda, const void* B, bool b_float, int64_t ldb, bool accumulate, void* C, int c_dtype, int64_t ldc) {
  if (M < 0 || N < 0 || K < 0)
    throw KernelError("hgemm: negative size M=" + std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K));
  if ((dtype != BF16 && dtype != F16) || (c_dtype != F32 && c_dtype != dtype))
    throw KernelError(std::string("hgemm: operands ") + dtype_name(dtype) + " with C " + dtype_name(c_dtype) +
                      "; need bfloat16 or float16 operands and a float32 C or one of their dtype");
  if (M == 0 || N == 0) return;
  const HalfPath* path = choose_path(dtype, M, N, K);  // before any write: a bad KESTREL_BF16_GEMM throws here
  bool half = c_dtype != F32;
  if (K == 0) {  // an empty sum: C = 0, or C unchanged when accumulating
    if (accumulate) return;
    for (int64_t i = 0; i < M; i++) {
      if (half) std::fill(static_cast<uint16_t*>(C) + i * ldc, static_cast<uint16_t*>(C) + i * ldc + N, uint16_t(0));
      else std::fill(static_cast<float*>(C) + i * ldc, static_cast<float*>(C) + i * ldc + N, 0.0f);
    }
    return;
  }
  HGemm g{path, dtype == F16, K, A, transA ? 1 : lda, transA ? lda : 1, B, transB ? ldb : 1, transB ? 1 : ldb, b_float,
          half ? c_buffer.get(size_t(M * N)) : static_cast<float*>(C), half ? N : ldc, accumulate,
          half ? static_cast<uint16_t*>(C) : nullptr, ldc};
  if (double(M) * double(N) * double(K) < 262144.0) threads = 1;  // not worth waking the pool (as sgemm)
  hgemm_threaded(g, M, N, threads);
}

}  // namespace
}  // namespace gemm_detail

// See gemm_half.h.
void hgemm_on(int threads, int dtype, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const uint16_t* A,
              int64_t lda, const uint16_t* B, int64_t ldb, bool accumulate, void* C, int c_dtype, int64_t ldc) {
  gemm_detail::hgemm_any_b(threads, dtype, transA, transB, M, N, K, A, lda, B, false, ldb, accumulate, C, c_dtype, ldc);
}

void hgemm_on_float_b(int threads, int dtype, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const uint16_t* A,
                      int64_t lda, const float* B, int64_t ldb, bool accumulate, void* C, int c_dtype, int64_t ldc) {
  gemm_detail::hgemm_any_b(threads, dtype, transA, transB, M, N, K, A, lda, B, true, ldb, accumulate, C, c_dtype, ldc);
}

void half_to_float(const uint16_t* src, int64_t n, bool fp16, float* dst) { gemm_detail::widen(src, n, fp16, dst); }
void float_to_half(const float* src, int64_t n, bool fp16, uint16_t* dst) { gemm_detail::narrow(src, n, fp16, dst); }

std::string hgemm_path_name(int dtype) {
  try {
    return gemm_detail::choose_path(dtype, 1024, 1024, 1024)->name;
  } catch (const KernelError& e) {
    return std::string("error: ") + e.what();
  }
}

}  // namespace kestrel
