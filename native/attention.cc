// Tiled (flash) attention forward and backward on the CPU (FlashAttention-2, Dao 2023): blocks of
// queries x blocks of keys with an online softmax, never more than a tile of scores per thread;
// key tiles that causal/window masking hides entirely are skipped. Backward recomputes the
// scores tile by tile from q, k and the saved logsumexp (no [Tq, Tk] matrix is ever stored):
//   D_i = do_i . o_i,  p_ij = exp(s_ij - lse_i),  p~_ij = p_ij keep_ij / (1 - drop)
//   dv_j = sum_i p~_ij do_i,  dp_ij = keep_ij / (1 - drop) do_i . v_j,  ds_ij = p_ij (dp_ij - D_i) [1 - t_ij^2]
//   dq_i = scale sum_j ds_ij k_j,  dk_j = scale sum_i ds_ij q_i   (t = tanh(raw / softcap) under soft-capping)
// dk/dv are computed per (b, kv head, key block) over every query head of the group, dq per
// (b, kv head, query block) in a second pass, so no two threads write the same rows and no float
// atomics are needed. The reference is src/backend/ref/attention.ts; the arguments are packed by
// src/backend/cpu/backend.ts. The tile loops live in attention_tiles.inc, compiled per ISA, with
// forward_one there for a decode step (one query position, float32, no dropout), which reads each
// key and value row once for the whole GQA group instead of padding its heads to a tile.
// bfloat16 q, k, v (and dout, out in backward) are multiplied as they are: every tile product goes
// to the half GEMM on the calling thread (gemm_half.h: AMX tiles, vdpbf16ps or widened while packing,
// by CPU and KESTREL_BF16_GEMM) with float32 accumulation; the probabilities and dS are rounded to
// bf16 for their products (as FlashAttention does in bf16), softmax and its statistics stay float32,
// and out / dq / dk / dv are written in float32.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <type_traits>
#include <vector>

#include "attention_philox.h"
#include "gemm_half.h"
#include "kernel_api.h"
#include "simd.h"

namespace kestrel {
namespace {

constexpr int64_t kRowsPerBlock = 64;  // query rows (heads x positions) per forward / dq task
constexpr int64_t kKeyTile = 64;       // keys per score tile
constexpr int64_t kQueryTile = 64;     // query positions per tile in the dk/dv pass
constexpr int64_t kSplitKeys = 128;    // a decode step splits its keys into parts of at least this many
constexpr int64_t kMinPartKeys = 16;   // for balance, into parts of at least this many

// The parts a decode step's keys split into (flash-decoding), so that its groups x parts tasks fill
// every thread evenly where a few groups would not: 3 kv heads on 2 threads take 6 half-heads, not
// 3 heads of which one thread runs two (smol135m q4 decode on Zen 3: attention 0.56 -> 0.52 ms a
// token); long contexts with few kv heads take at least 2 tasks per thread, each part kSplitKeys
// keys at least. Parts of fewer than kMinPartKeys keys would cost more in the merge than the balance gains.
int64_t decode_parts(int64_t groups, int64_t threads, int64_t n) {
  if (threads <= 1 || groups <= 0) return 1;
  // the fewest parts that make groups x parts a multiple of threads, where the remainder matters
  const int64_t even = groups < 4 * threads ? threads / std::gcd(groups, threads) : 1;
  int64_t parts = even;
  if (groups < 2 * threads && n >= 2 * kSplitKeys) {
    const int64_t longer = std::min(n / kSplitKeys, (2 * threads + groups - 1) / groups);
    parts = std::max(parts, (longer + even - 1) / even * even);
  }
  return std::max<int64_t>(1, std::min(parts, n / kMinPartKeys));
}

// Sizes, pointers and options of one attention call, validated.
struct Problem {
  int64_t B = 0, H = 0, Hkv = 0, Tq = 0, Tk = 0, hd = 0, hdv = 0, rep = 1, shift = 0;
  const float *q = nullptr, *k = nullptr, *v = nullptr;
  // Element offsets of batch b, kv head g in k and v: b*k_bs + g*k_hs. Contiguous k/v have
  // k_hs = Tk*hd; the forward also takes heads further apart (a KV cache's narrowed prefix, whose
  // heads lie maxLen rows apart), rows of hd values always contiguous within a head.
  int64_t k_bs = 0, k_hs = 0, v_bs = 0, v_hs = 0;
  // bfloat16 q, k, v (then q, k, v above are null): the tile products run on the half GEMM
  bool half = false;
  const uint16_t *qh = nullptr, *kh = nullptr, *vh = nullptr;
  const uint16_t* doh = nullptr;  // backward's bf16 dout (set by backward_half)
  // the half GEMM multiplies bf16 (AMX or vdpbf16ps); false: its convert path, where the tiles are
  // widened to float32 as they are loaded and this file's own float32 tile product runs instead
  bool half_native = false;
  const float* mask = nullptr;
  int64_t ms[4] = {0, 0, 0, 0};  // mask strides, 0 on broadcast dims
  float scale = 1, softcap = 0;
  bool causal = false;
  int64_t window = 0;
  double dropout = 0;
  float keep_scale = 1;  // 1 / (1 - dropout)
  attn_philox::DropoutStream drop{0, 0, 0, 0.0};

  // Keys visible to query i are jlo(i) <= j < jhi(i) (i' = i + Tk - Tq: causal j <= i',
  // window j > i' - window); both bounds grow with i.
  int64_t jhi(int64_t i) const { return causal ? std::clamp<int64_t>(i + shift + 1, 0, Tk) : Tk; }
  int64_t jlo(int64_t i) const { return window > 0 ? std::clamp<int64_t>(i + shift - window + 1, 0, Tk) : 0; }
  // Every (i, j) of queries [i0, i0 + m) x keys [j0, j0 + n) visible: no per-element masking.
  bool tile_visible(int64_t i0, int64_t m, int64_t j0, int64_t n) const {
    return jlo(i0 + m - 1) <= j0 && j0 + n <= jhi(i0);
  }
  const float* mask_row(int64_t b, int64_t h, int64_t i) const { return mask + b * ms[0] + h * ms[1] + i * ms[2]; }
  int64_t rows_per_block() const { return std::max<int64_t>(1, kRowsPerBlock / rep); }
  int64_t key_tile() const { return kKeyTile; }
  int64_t query_tile() const { return kQueryTile; }
  // Backward task shape (attention_tiles.inc): 0 = by thread count, 1 = split, 2 = grouped.
  // KESTREL_ATTN_BACKWARD=split|grouped forces one (tests cover both on any machine).
  int backward_mode = 0;
};

namespace isa_scalar {
using V = simd::Scalar;
#include "attention_tiles.inc"
}  // namespace isa_scalar

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace isa_avx2 {
using V = simd::Avx2;
#include "attention_tiles.inc"
}  // namespace isa_avx2
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
namespace isa_avx512 {
using V = simd::Avx512;
#include "attention_tiles.inc"
}  // namespace isa_avx512
#pragma GCC pop_options

// ------------------------------------------------------------------ argument checks

void need_f32(const char* kernel, const char* what, const View& v) {
  if (v.dtype != F32) fail(kernel, std::string(what) + " must be float32, got " + dtype_name(v.dtype) + " " + shape_str(v));
  if (!v.contiguous()) fail(kernel, std::string(what) + " " + shape_str(v) + " must be contiguous");
}

// float32, or bfloat16 when `half` (the dtype of q, k, v decides for every 16-bit operand).
void need_dtype(const char* kernel, const char* what, const View& v, bool half) {
  if (!half) return need_f32(kernel, what, v);
  if (v.dtype != BF16) fail(kernel, std::string(what) + " must be bfloat16 like q, got " + dtype_name(v.dtype) + " " + shape_str(v));
  if (!v.contiguous()) fail(kernel, std::string(what) + " " + shape_str(v) + " must be contiguous");
}

std::string dims(const Problem& p);

// `p` names the problem's dims in the error (built only on failure).
void need_shape(const char* kernel, const char* what, const View& v, std::initializer_list<int64_t> shape,
                const Problem& p, bool half = false) {
  need_dtype(kernel, what, v, half);
  bool ok = v.ndim == int(shape.size());
  int d = 0;
  for (int64_t s : shape) ok = ok && v.shape[d++] == s;
  if (!ok) {
    std::string want = "[";
    d = 0;
    for (int64_t s : shape) want += (d++ ? "," : "") + std::to_string(s);
    fail(kernel, std::string(what) + " " + shape_str(v) + " must be " + want + "] (" + dims(p) + ")");
  }
}

// q, k, v and the optional mask, the first arguments of both kernels.
struct Inputs {
  View q, k, v, mask;
  bool has_mask = false;
};

Inputs read_inputs(Args& args) {
  Inputs in;
  in.q = args.view(), in.k = args.view(), in.v = args.view();
  in.has_mask = args.has_view();
  if (in.has_mask) in.mask = args.view();
  return in;
}

// k or v [B, Hkv, Tk, d] whose heads may lie apart: d contiguous values per row, rows d apart
// within a head, batch and head strides anything non-negative.
void need_head_rows(const char* kernel, const char* what, const View& v, bool half) {
  if (v.dtype != (half ? BF16 : F32))
    fail(kernel, std::string(what) + " must be " + (half ? "bfloat16 like q" : "float32") + ", got " + dtype_name(v.dtype) + " " + shape_str(v));
  bool rows = v.ndim == 4 && (v.shape[3] <= 1 || v.stride[3] == 1) && (v.shape[2] <= 1 || v.stride[2] == v.shape[3]) &&
              v.stride[0] >= 0 && v.stride[1] >= 0;
  if (!rows) fail(kernel, std::string(what) + " " + shape_str(v) + " needs contiguous rows within each head");
}

// Validates q, k, v and the mask and reads the options (AttentionOpts, in backend.ts's order).
// `head_strided`: k and v may have their heads apart (the forward); else they must be contiguous.
Problem make_problem(const char* kernel, const Inputs& in, Args& args, bool head_strided) {
  Problem p;
  const View &q = in.q, &k = in.k, &v = in.v, &mask = in.mask;
  p.half = q.dtype == BF16;
  need_dtype(kernel, "q", q, p.half);
  if (head_strided) {
    need_head_rows(kernel, "k", k, p.half);
    need_head_rows(kernel, "v", v, p.half);
  } else {
    need_dtype(kernel, "k", k, p.half);
    need_dtype(kernel, "v", v, p.half);
  }
  // the shapes for an error message, built only on failure: this runs every decode step
  auto ctx = [&] { return "q " + shape_str(q) + ", k " + shape_str(k) + ", v " + shape_str(v); };
  if (q.ndim != 4 || k.ndim != 4 || v.ndim != 4) fail(kernel, "q, k, v must be [B, H, T, hd]: " + ctx());
  p.B = q.shape[0], p.H = q.shape[1], p.Tq = q.shape[2], p.hd = q.shape[3];
  p.Hkv = k.shape[1], p.Tk = k.shape[2], p.hdv = v.shape[3];
  if (k.shape[0] != p.B || v.shape[0] != p.B) fail(kernel, "batch sizes differ: " + ctx());
  if (k.shape[3] != p.hd) fail(kernel, "q and k head dims differ: " + ctx());
  if (v.shape[1] != p.Hkv || v.shape[2] != p.Tk) fail(kernel, "k and v must agree in heads and length: " + ctx());
  if (p.Hkv < 1 || p.H % p.Hkv != 0) fail(kernel, "query heads must be a multiple of kv heads: " + ctx());
  p.rep = p.H / p.Hkv;
  p.shift = p.Tk - p.Tq;
  // a size-1 dim's stride is never used by the offsets below; contiguous ones are the defaults
  p.k_hs = head_strided && p.Hkv > 1 ? k.stride[1] : p.Tk * p.hd;
  p.k_bs = head_strided && p.B > 1 ? k.stride[0] : p.Hkv * p.Tk * p.hd;
  p.v_hs = head_strided && p.Hkv > 1 ? v.stride[1] : p.Tk * p.hdv;
  p.v_bs = head_strided && p.B > 1 ? v.stride[0] : p.Hkv * p.Tk * p.hdv;
  if (p.half) p.qh = q.ptr<uint16_t>(), p.kh = k.ptr<uint16_t>(), p.vh = v.ptr<uint16_t>();
  if (p.half) {
    std::string path = hgemm_path_name(BF16);  // KESTREL_BF16_GEMM or the CPU's choice
    if (path.rfind("error: ", 0) == 0) fail(kernel, path.substr(7));
    p.half_native = path != "convert";
  }
  else p.q = q.ptr<float>(), p.k = k.ptr<float>(), p.v = v.ptr<float>();
  if (in.has_mask) {
    if (mask.dtype != F32) fail(kernel, std::string("mask must be float32 (additive), got ") + dtype_name(mask.dtype));
    bool ok = mask.ndim == 4 && (mask.shape[0] == p.B || mask.shape[0] == 1) &&
              (mask.shape[1] == p.H || mask.shape[1] == 1) && mask.shape[2] == p.Tq && mask.shape[3] == p.Tk;
    if (!ok) fail(kernel, "mask " + shape_str(mask) + " must be [B|1, H|1, Tq, Tk] for " + ctx());
    p.mask = mask.ptr<float>();
    for (int d = 0; d < 4; d++) p.ms[d] = mask.shape[d] == 1 ? 0 : mask.stride[d];
  }
  double scale = args.num();
  p.causal = args.flag();
  p.window = args.i64();
  double softcap = args.num(), dropout = args.num();
  int64_t seed_lo = args.i64(), seed_hi = args.i64(), counter = args.i64();
  if (!std::isfinite(scale)) fail(kernel, "scale must be finite, got " + std::to_string(scale));
  if (p.window < 0) fail(kernel, "window must be >= 0, got " + std::to_string(p.window));
  if (!(softcap >= 0) || !std::isfinite(softcap)) fail(kernel, "softcap must be >= 0, got " + std::to_string(softcap));
  if (!(dropout >= 0 && dropout < 1)) fail(kernel, "dropout must be in [0, 1), got " + std::to_string(dropout));
  if (seed_lo < 0 || seed_lo > 0xffffffffLL || seed_hi < 0 || seed_hi > 0xffffffffLL || counter < 0)
    fail(kernel, "dropout seed words must be in [0, 2^32) and the counter >= 0");
  p.scale = float(scale);
  p.softcap = float(softcap);
  p.dropout = dropout;
  p.keep_scale = float(1.0 / (1.0 - dropout));
  p.drop = attn_philox::DropoutStream(uint32_t(seed_lo), uint32_t(seed_hi), uint64_t(counter), dropout);
  if (const char* mode = std::getenv("KESTREL_ATTN_BACKWARD")) {
    std::string m(mode);
    p.backward_mode = m == "split" ? 1 : m == "grouped" ? 2 : 0;
  }
  return p;
}

std::string dims(const Problem& p) {
  return "B=" + std::to_string(p.B) + " H=" + std::to_string(p.H) + " Hkv=" + std::to_string(p.Hkv) +
         " Tq=" + std::to_string(p.Tq) + " Tk=" + std::to_string(p.Tk) + " hd=" + std::to_string(p.hd) +
         " hdv=" + std::to_string(p.hdv);
}

}  // namespace

KESTREL_KERNEL(attention) {
  const char* k = "attention";
  Inputs in = read_inputs(args);
  Problem p = make_problem(k, in, args, true);
  View out = args.view(), lse = args.view();
  args.done();
  need_shape(k, "out", out, {p.B, p.H, p.Tq, p.hdv}, p);
  need_shape(k, "lse", lse, {p.B, p.H, p.Tq}, p);
  switch (simd::level()) {
    case 2: isa_avx512::forward(p, out.ptr<float>(), lse.ptr<float>()); break;
    case 1: isa_avx2::forward(p, out.ptr<float>(), lse.ptr<float>()); break;
    default: isa_scalar::forward(p, out.ptr<float>(), lse.ptr<float>());
  }
}

KESTREL_KERNEL(attention_backward) {
  const char* k = "attention_backward";
  Inputs in = read_inputs(args);
  View out = args.view(), lse = args.view(), dout = args.view();
  Problem p = make_problem(k, in, args, false);
  View dq = args.view(), dk = args.view(), dv = args.view();
  args.done();
  need_shape(k, "out", out, {p.B, p.H, p.Tq, p.hdv}, p, p.half);
  need_shape(k, "lse", lse, {p.B, p.H, p.Tq}, p);
  need_shape(k, "dout", dout, {p.B, p.H, p.Tq, p.hdv}, p, p.half);
  need_shape(k, "dq", dq, {p.B, p.H, p.Tq, p.hd}, p);
  need_shape(k, "dk", dk, {p.B, p.Hkv, p.Tk, p.hd}, p);
  need_shape(k, "dv", dv, {p.B, p.Hkv, p.Tk, p.hdv}, p);
  const float *o = out.ptr<float>(), *z = lse.ptr<float>(), *g = dout.ptr<float>();
  float *gq = dq.ptr<float>(), *gk = dk.ptr<float>(), *gv = dv.ptr<float>();
  if (p.half) {  // out and dout as bf16: D = do . o is formed from them, the products take dout as it is
    const uint16_t *oh = out.ptr<uint16_t>(), *gh = dout.ptr<uint16_t>();
    switch (simd::level()) {
      case 2: isa_avx512::backward_half(p, oh, z, gh, gq, gk, gv); break;
      case 1: isa_avx2::backward_half(p, oh, z, gh, gq, gk, gv); break;
      default: isa_scalar::backward_half(p, oh, z, gh, gq, gk, gv);
    }
    return;
  }
  switch (simd::level()) {
    case 2: isa_avx512::backward(p, o, z, g, gq, gk, gv); break;
    case 1: isa_avx2::backward(p, o, z, g, gq, gk, gv); break;
    default: isa_scalar::backward(p, o, z, g, gq, gk, gv);
  }
}

}  // namespace kestrel
