// The deterministic dq pass of the tensor-core flash attention backward, run under
// KESTREL_DETERMINISTIC=1 (by default attention_tc_backward.cu's dkdv pass adds dq with float32
// atomics instead): a block per 64 queries of (b, h), a warp per 16 of them, looping over the visible
// key tiles (K and V double-buffered by cp.async; one buffer at hd 256, to stay under 99 KB of shared
// memory): S = Q Kᵀ and dP = dO Vᵀ in registers, dS as the A operand of dQ += dS K straight from
// registers. No atomics, so dq is the same bits every run; 7 products per (query, key) pair with the
// dkdv pass's 4.
#include "attention_tc.cuh"

using namespace kst;
using namespace kst::attn;

// The dq pass's elementwise step: S and dP of queries i + rows (lse2 and D of row r at stats[2r],
// stats[2r + 1]), keys j + columns, into dS (in s).
template <bool FULL, int N8> KFN void grads(const TcProblem& X, int mode, float (&s)[1][N8][4], const float (&dp)[1][N8][4], const float* stats, i64 b, i64 h, i64 i,
                                            i64 j) {
  if (FULL && mode == GENERAL) {
    const Problem& P = X.p;
    KST_UNROLL
    for (int r = 0; r < 2; r++) {
      const int row = acc_row(2 * r);
      const float lse2 = stats[2 * row], D = stats[2 * row + 1];
      const RowKeys rk = row_keys(P, i + row, j, 8 * N8);
      const float* mrow = mask_row(P, b, h, i + row);
      const u64 base = drop_index(P, b, h, i + row, j);
      KST_UNROLL
      for (int n = 0; n < N8; n++)
        KST_UNROLL
        for (int u = 0; u < 2; u++) {
          float& x = s[0][n][2 * r + u];
          const int c = acc_col(n, u);
          float dt = 1.0f, p = 0.0f;
          if (c >= rk.lo && c < rk.hi) p = exp2f(general_score2(P, x, mrow, j + c, dt) - lse2);
          const float f = P.threshold == 0 ? 1.0f : p != 0.0f && kept_at(P, base + c) ? P.keep_scale : 0.0f;
          x = p == 0.0f ? 0.0f : p * (dp[0][n][2 * r + u] * f - D) * dt;
        }
    }
    return;
  }
  if (mode == PLAIN) scores2_as<PLAIN>(X, s, b, h, i, j);
  else scores2_as<VISIBLE>(X, s, b, h, i, j);
  KST_UNROLL
  for (int r = 0; r < 2; r++) {
    const int row = acc_row(2 * r);
    const float lse2 = stats[2 * row], D = stats[2 * row + 1];
    const u64 base = drop_index(X.p, b, h, i + row, j);
    KST_UNROLL
    for (int n = 0; n < N8; n++)
      KST_UNROLL
      for (int u = 0; u < 2; u++) {
        float& x = s[0][n][2 * r + u];
        const float p = exp2f(x - lse2);
        float f = 1.0f;
        if (FULL && X.p.threshold != 0) f = p != 0.0f && kept_at(X.p, base + acc_col(n, u)) ? X.p.keep_scale : 0.0f;
        x = p == 0.0f ? 0.0f : p * (dp[0][n][2 * r + u] * f - D);
      }
  }
}

template <int HD_, int BK_, int NB_, bool FULL_> struct BwdQ {
  static constexpr int HD = HD_, BK = BK_, BQ = 64, LD = HD + 8, NS = BK / 8, NB = NB_;  // NB buffers of k, v
  static constexpr bool FULL = FULL_;
  // row statistics, then q, dout, (k, v) NB times (the TypeScript side mirrors the size)
  static constexpr unsigned SMEM = 8 * BQ + (2 * BQ + 2 * NB * BK) * LD * 2;
};

// One key tile of the dq pass for this warp's 16 rows wi + [0, 16): S, dP, dS, then acc += dS K.
template <class T, class C>
KFN void dq_tile(const TcProblem& X, const u16* sq, const u16* sdo, const u16* sk, const u16* sv, const float* stats, float (&acc)[1][C::HD / 8][4], i64 b,
                 i64 h, i64 wi, i64 j0) {
  const Problem& P = X.p;
  const int w = threadIdx.x >> 5;
  float s[1][C::NS][4], dp[1][C::NS][4];
  zero_acc(s);
  zero_acc(dp);
  mma_abt<T, 1, C::NS, C::HD / 16>(s, sq + 16 * w * C::LD, C::LD, sk, C::LD, P.hd);
  mma_abt<T, 1, C::NS, C::HD / 16>(dp, sdo + 16 * w * C::LD, C::LD, sv, C::LD, P.hdv);
  grads<C::FULL>(X, X.tile_mode(wi, 16, j0, C::BK), s, dp, stats + 32 * w, b, h, wi, j0);
  KST_UNROLL
  for (int kk = 0; kk < C::BK / 16; kk++) {
    u32 fa[1][4];
    acc_to_a<T>(fa[0], s[0], kk);
    mma_ab<T>(acc, fa, sk + 16 * kk * C::LD, C::LD, P.hd);
  }
}

// dq of query tile blockIdx.z (from the end, as the forward's) of head (b = blockIdx.y, h = blockIdx.x).
template <class T, class C> KFN void dq_tc(const TcProblem& X, const u16* dout, const float* stats2, u16* dq) {
  const Problem& P = X.p;
  KST_DYNAMIC_SMEM(float, stats);
  u16 *sq = reinterpret_cast<u16*>(stats + 2 * C::BQ), *sdo = sq + C::BQ * C::LD;
  u16* const skv = sdo + C::BQ * C::LD;  // buffer u: k at skv + 2u BK LD, v after it
  const int w = threadIdx.x >> 5, g = lane() >> 2, t = lane() & 3;
  const i64 b = blockIdx.y, h = blockIdx.x, hk = h / P.rep;
  const i64 i0 = i64(gridDim.z - 1 - blockIdx.z) * C::BQ, nq = min64(P.Tq - i0, C::BQ), wi = i0 + 16 * w;
  const i64 row0 = (b * P.H + h) * P.Tq + i0;
  const i64 jstart = P.jlo(i0), jend = P.jhi(i0 + nq - 1);
  const i64 wlo = wi < P.Tq ? P.jlo(wi) : 0, whi = wi < P.Tq ? P.jhi(min64(wi + 16, P.Tq) - 1) : 0;
  const u16* kb = X.k + (b * P.Hkv + hk) * P.Tk * P.hd;
  const u16* vb = X.v + (b * P.Hkv + hk) * P.Tk * P.hdv;
  auto load_kv = [&](int u, i64 j0) {
    u16* sk = skv + 2 * u * C::BK * C::LD;
    load_tile16<C::BK, C::HD, C::LD>(sk, kb + j0 * P.hd, jend - j0, P.hd);
    load_tile16<C::BK, C::HD, C::LD>(sk + C::BK * C::LD, vb + j0 * P.hdv, jend - j0, P.hdv);
  };
  load_tile16<C::BQ, C::HD, C::LD>(sq, X.q + row0 * P.hd, nq, P.hd);
  load_tile16<C::BQ, C::HD, C::LD>(sdo, dout + row0 * P.hdv, nq, P.hdv);
  load_row_stats<C::BQ>(stats, stats2, row0, nq);
  if (jstart < jend) load_kv(0, jstart);
  float acc[1][C::HD / 8][4];
  zero_acc(acc);
  int u = 0;
  for (i64 j0 = jstart; j0 < jend; j0 += C::BK, u = (u + 1) % C::NB) {
    cp_async_wait_all();
    sync();  // tile j0 (and q, dout) landed; every warp is done with the previous tile, whose buffer refills now
    if (C::NB == 2 && j0 + C::BK < jend) load_kv(u ^ 1, j0 + C::BK);
    const u16 *sk = skv + 2 * u * C::BK * C::LD, *sv = sk + C::BK * C::LD;
    if (j0 < whi && j0 + C::BK > wlo) dq_tile<T, C>(X, sq, sdo, sk, sv, stats, acc, b, h, wi, j0);
    if (C::NB == 1 && j0 + C::BK < jend) {
      sync();  // one buffer: every warp is done with this tile before the next one's copies start
      load_kv(0, j0 + C::BK);
    }
  }
  cp_async_wait_all();  // no visible key: q's and dout's copies

  KST_UNROLL
  for (int r = 0; r < 2; r++) {
    const i64 i = wi + g + 8 * r;
    if (i >= P.Tq) continue;
    KST_UNROLL
    for (int n = 0; n < C::HD / 8; n++)
      if (8 * n < P.hd) store2<T>(dq, ((b * P.H + h) * P.Tq + i) * P.hd + 8 * n + 2 * t, P.scale * acc[0][n][2 * r], P.scale * acc[0][n][2 * r + 1], false);
  }
}

// Tile shapes per head-dim bound (the TypeScript side mirrors them): BK keys per tile, NB buffers
// (dynamic shared memory 31, 55, 69, 83 KB). Kernel names as the backward's other passes.
#define KST_ATTN_TC_DQ(NAME, T, D, BK, NB, FULL, SUFFIX)                                                             \
  KERNEL_BOUNDS(attention_tc_backward_dq_##NAME##_d##D##SUFFIX, TC_THREADS, 2,                                         \
                (KST_ATTN_TC_PARAMS, const u16* dout, const float* stats2, u16* dq)) {                                \
    dq_tc<T, BwdQ<D, BK, NB, FULL>>(KST_ATTN_TC_PROBLEM, dout, stats2, dq);                                             \
  }
#define KST_ATTN_TC_DQ_TYPES(D, BK, NB, FULL, SUFFIX) \
  KST_ATTN_TC_DQ(bf16, bf16, D, BK, NB, FULL, SUFFIX) \
  KST_ATTN_TC_DQ(f16, f16, D, BK, NB, FULL, SUFFIX)

KST_ATTN_TC_DQ_TYPES(32, 64, 2, false, )
KST_ATTN_TC_DQ_TYPES(64, 64, 2, false, )
KST_ATTN_TC_DQ_TYPES(128, 32, 2, false, )
KST_ATTN_TC_DQ_TYPES(256, 16, 1, false, )
KST_ATTN_TC_DQ_TYPES(32, 64, 2, true, _full)
KST_ATTN_TC_DQ_TYPES(64, 64, 2, true, _full)
KST_ATTN_TC_DQ_TYPES(128, 32, 2, true, _full)
KST_ATTN_TC_DQ_TYPES(256, 16, 1, true, _full)
