// Flash attention forward on tensor cores for bfloat16 / float16 q, k, v (FlashAttention-2, Dao
// 2023; same maths, options and outputs as the float32 SIMT kernel attention.cu). Tiling (as
// FlashAttention-2's forward): a block of 4 warps owns BQ = 64 MT query rows of one (b, h), each
// warp 16 MT of them (MT m-tiles, so that every K / V fragment read from shared memory feeds MT
// products); K and V stream through shared memory in tiles of BK keys, double-buffered: the copy of
// tile n + 1 (cp.async) runs during the whole of tile n's maths, one barrier per tile. S and O stay
// in registers as mma.m16n8k16 accumulators (float32); the online softmax works on them in base 2
// (scale log2 e folded into one multiply), a row's statistics reduced over the 4 lanes that share
// it; P, rounded to the input type, is the A operand of P V straight from registers. Key tiles no
// query of the block sees (causal, window) are never loaded, a warp skips the tiles none of its
// rows sees, and only tiles a visibility boundary crosses are tested per element.
// Outputs: out [B,H,Tq,hdv] in the input type, lse [B,H,Tq] float32 (-inf, and a zero row, where a
// query sees no key).
#include "attention_tc.cuh"

using namespace kst;
using namespace kst::attn;

template <int HD_, int BK_, int MT_, bool FULL_> struct FwdTc {
  static constexpr int HD = HD_, BK = BK_, MT = MT_, WR = 16 * MT, BQ = 4 * WR, LD = HD + 8, NO = HD / 8, NS = BK / 8;
  static constexpr bool FULL = FULL_;  // masks, soft-capping and dropout (else none of them: less code, fewer registers)
  // q, then (k, v) twice (the TypeScript side mirrors it)
  static constexpr unsigned SMEM = (BQ + 4 * BK) * LD * 2;
};

// One key tile of one warp: S = Q Kᵀ for its rows wi + [0, WR) and keys j0 + [0, BK), the online
// softmax update of (m, l, o), then o += P V.
template <class T, class C>
KFN void forward_tile(const TcProblem& X, const u16* sq, const u16* sk, const u16* sv, float (&o)[C::MT][C::NO][4], float (&m)[C::MT][2],
                      float (&l)[C::MT][2], i64 b, i64 h, i64 wi, i64 j0) {
  const Problem& P = X.p;
  float s[C::MT][C::NS][4];
  zero_acc(s);
  mma_abt<T, C::MT, C::NS, C::HD / 16>(s, sq, C::LD, sk, C::LD, P.hd);
  scores2<C::FULL>(X, X.tile_mode(wi, C::WR, j0, C::BK), s, b, h, wi, j0);
  KST_UNROLL
  for (int mt = 0; mt < C::MT; mt++) {
    float mx[2] = {neg_inf(), neg_inf()}, msafe[2], sum[2] = {0.0f, 0.0f};
    KST_UNROLL
    for (int n = 0; n < C::NS; n++)
      KST_UNROLL
      for (int e = 0; e < 4; e++) mx[e >> 1] = s[mt][n][e] > mx[e >> 1] ? s[mt][n][e] : mx[e >> 1];
    KST_UNROLL
    for (int r = 0; r < 2; r++) {
      KST_UNROLL
      for (int x = 1; x < 4; x <<= 1) {
        const float y = shfl_xor(mx[r], x);
        mx[r] = y > mx[r] ? y : mx[r];
      }
      const float mn = mx[r] > m[mt][r] ? mx[r] : m[mt][r];
      msafe[r] = mn == neg_inf() ? 0.0f : mn;  // no visible key yet: p = 0
      const float alpha = exp2f(m[mt][r] - msafe[r]);
      m[mt][r] = mn;
      l[mt][r] *= alpha;
      KST_UNROLL
      for (int n = 0; n < C::NO; n++) o[mt][n][2 * r] *= alpha, o[mt][n][2 * r + 1] *= alpha;
    }
    KST_UNROLL
    for (int n = 0; n < C::NS; n++)
      KST_UNROLL
      for (int e = 0; e < 4; e++) {
        s[mt][n][e] = exp2f(s[mt][n][e] - msafe[e >> 1]);
        sum[e >> 1] += s[mt][n][e];
      }
    l[mt][0] += sum[0], l[mt][1] += sum[1];  // per lane (the 4 lanes of a row add theirs at the end); l keeps dropped p
  }
  if (C::FULL && P.threshold != 0) drop(P, s, b, h, wi, j0);
  KST_UNROLL
  for (int kk = 0; kk < C::BK / 16; kk++) {
    u32 fa[C::MT][4];
    KST_UNROLL
    for (int mt = 0; mt < C::MT; mt++) acc_to_a<T>(fa[mt], s[mt], kk);
    mma_ab<T>(o, fa, sv + 16 * kk * C::LD, C::LD, P.hdv);
  }
}

template <class T, class C> KFN void forward_tc(const TcProblem& X, u16* out, float* lse) {
  const Problem& P = X.p;
  KST_DYNAMIC_SMEM(u16, sq);
  u16* const skv = sq + C::BQ * C::LD;  // buffer u: k at skv + 2u BK LD, v after it
  const int w = threadIdx.x >> 5, g = lane() >> 2, t = lane() & 3;
  // grid (H, B, query tiles): blocks start in the order of their index, x fastest, so the last query
  // tiles (under a causal mask the ones that see the most keys) of every head start first
  const i64 b = blockIdx.y, h = blockIdx.x, hk = h / P.rep;
  const i64 i0 = i64(gridDim.z - 1 - blockIdx.z) * C::BQ;
  const i64 nq = min64(P.Tq - i0, C::BQ), wi = i0 + C::WR * w;
  const u16* kb = X.k + (b * P.Hkv + hk) * P.Tk * P.hd;
  const u16* vb = X.v + (b * P.Hkv + hk) * P.Tk * P.hdv;
  const i64 jstart = P.jlo(i0), jend = P.jhi(i0 + nq - 1);
  // keys this warp's rows in the problem see: [wlo, whi)
  const i64 wlo = wi < P.Tq ? P.jlo(wi) : 0, whi = wi < P.Tq ? P.jhi(min64(wi + C::WR, P.Tq) - 1) : 0;
  auto load_kv = [&](int u, i64 j0) {
    u16* sk = skv + 2 * u * C::BK * C::LD;
    load_tile16<C::BK, C::HD, C::LD>(sk, kb + j0 * P.hd, jend - j0, P.hd);
    load_tile16<C::BK, C::HD, C::LD>(sk + C::BK * C::LD, vb + j0 * P.hdv, jend - j0, P.hdv);
  };
  load_tile16<C::BQ, C::HD, C::LD>(sq, X.q + ((b * P.H + h) * P.Tq + i0) * P.hd, nq, P.hd);
  if (jstart < jend) load_kv(0, jstart);

  float o[C::MT][C::NO][4], m[C::MT][2], l[C::MT][2];  // rows g and g + 8 of each m-tile
  zero_acc(o);
  KST_UNROLL
  for (int mt = 0; mt < C::MT; mt++) m[mt][0] = m[mt][1] = neg_inf(), l[mt][0] = l[mt][1] = 0.0f;
  int u = 0;
  for (i64 j0 = jstart; j0 < jend; j0 += C::BK, u ^= 1) {
    cp_async_wait_all();
    sync();  // tile j0 (and Q) landed; every warp is done with the previous tile, whose buffer refills now
    if (j0 + C::BK < jend) load_kv(u ^ 1, j0 + C::BK);
    if (j0 < whi && j0 + C::BK > wlo) {
      const u16* sk = skv + 2 * u * C::BK * C::LD;
      forward_tile<T, C>(X, sq + C::WR * w * C::LD, sk, sk + C::BK * C::LD, o, m, l, b, h, wi, j0);
    }
  }
  cp_async_wait_all();  // nothing may be in flight when the block ends (no key visible: Q's copy)

  KST_UNROLL
  for (int mt = 0; mt < C::MT; mt++)
    KST_UNROLL
    for (int r = 0; r < 2; r++) {
      float lr = l[mt][r];
      lr += shfl_xor(lr, 1);
      lr += shfl_xor(lr, 2);
      const i64 i = wi + 16 * mt + g + 8 * r;
      if (i >= P.Tq) continue;
      const bool none = lr == 0.0f;  // no visible key: out 0, lse -inf (a NaN score gives NaN, as in PyTorch)
      const float inv = none ? 0.0f : P.keep_scale / lr;
      u16* orow = out + ((b * P.H + h) * P.Tq + i) * P.hdv;
      KST_UNROLL
      for (int n = 0; n < C::NO; n++)
        if (8 * n < P.hdv) store2<T>(orow, 8 * n + 2 * t, o[mt][n][2 * r] * inv, o[mt][n][2 * r + 1] * inv, false);
      if (t == 0) lse[(b * P.H + h) * P.Tq + i] = none ? neg_inf() : m[mt][r] * LN2 + logf(lr);
    }
}

// Tile shapes per head-dim bound (the TypeScript side mirrors them): BK keys per tile, MT m-tiles
// per warp; the _full kernels (masks, soft-capping, dropout) use single m-tiles, so that their
// longer per-element code fits in registers too. Two blocks per SM (at most 255 registers each).
// Dynamic shared memory: 30, 54, 68, 66 KB (_full: 25, 45, 85, 66 KB).
#define KST_ATTN_TC_FORWARD(NAME, T, D, BK, MT, FULL, SUFFIX)                                                            \
  KERNEL_BOUNDS(attention_tc_forward_##NAME##_d##D##SUFFIX, TC_THREADS, 2, (KST_ATTN_TC_PARAMS, u16 * out, float* lse)) { \
    forward_tc<T, FwdTc<D, BK, MT, FULL>>(KST_ATTN_TC_PROBLEM, out, lse);                                                 \
  }
#define KST_ATTN_TC_FORWARD_TYPES(D, BK, MT, FULL, SUFFIX) \
  KST_ATTN_TC_FORWARD(bf16, bf16, D, BK, MT, FULL, SUFFIX) \
  KST_ATTN_TC_FORWARD(f16, f16, D, BK, MT, FULL, SUFFIX)

KST_ATTN_TC_FORWARD_TYPES(32, 64, 2, false, )
KST_ATTN_TC_FORWARD_TYPES(64, 64, 2, false, )
KST_ATTN_TC_FORWARD_TYPES(128, 32, 2, false, )
KST_ATTN_TC_FORWARD_TYPES(256, 16, 1, false, )
KST_ATTN_TC_FORWARD_TYPES(32, 64, 1, true, _full)
KST_ATTN_TC_FORWARD_TYPES(64, 64, 1, true, _full)
KST_ATTN_TC_FORWARD_TYPES(128, 64, 1, true, _full)
KST_ATTN_TC_FORWARD_TYPES(256, 16, 1, true, _full)
