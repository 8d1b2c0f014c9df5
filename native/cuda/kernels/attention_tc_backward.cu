// Flash attention backward on tensor cores for bfloat16 / float16 (the recurrences and kernel plan
// of the float32 SIMT attention_backward.cu, deterministic: no float atomics). Scores are recomputed
// from q, k and the forward's logsumexp; products run on mma.m16n8k16 with float32 accumulators,
// P~ and dS rounded to the input type as their operands (as FlashAttention-2 does).
// dkdv: a block per (b, kv head or a share of its query heads, tile of BK = 16 KW keys), looping
//   over the query heads and query tiles of BQ that see the keys. Phase 1: warp (kw, qw) computes
//   Sᵀ = K Qᵀ and dPᵀ = V dOᵀ for its 16 keys x BQ / QW queries in registers, turns them into P~ᵀ
//   and dSᵀ and writes both to shared memory; phase 2: warp (kw, cw) accumulates dV += P~ᵀ dO and
//   dK += dSᵀ Q for its 16 keys x HD / QW columns in registers across the whole loop. hd 256 splits
//   the columns over two warps (KW = 2) so that the accumulators fit in registers.
// dq: a block per 64 queries of (b, h), a warp per 16 of them, looping over the visible key tiles:
//   S = Q Kᵀ and dP = dO Vᵀ in registers, dS as the A operand of dQ += dS K straight from registers.
// rowdot: D = rowsum(dO o) in float32; sum_heads: adds the per-share float32 partial dk/dv in a
// fixed order into the input type. Rows of every shared tile are padded by 8 values (16 bytes).
#include "attention_tc.cuh"

using namespace kst;
using namespace kst::attn;

template <int HD_, int KW_, int BQ_> struct BwdKV {
  static constexpr int HD = HD_, KW = KW_, BK = 16 * KW, BQ = BQ_, QW = 4 / KW;
  static constexpr int NQ = BQ / QW, NC = HD / QW, LD = HD + 8, LP = BQ + 8;
  // lse and D as floats, then k, v, q, dout, p~ᵀ, dsᵀ (the TypeScript side mirrors the size)
  static constexpr unsigned SMEM = 2 * BQ * 4 + ((2 * BK + 2 * BQ) * LD + 2 * BK * LP) * 2;
  static_assert(KW * QW == 4 && NQ % 16 == 0 && NC % 16 == 0, "dkdv tile shape");
};

// Phase 1's elementwise step: Sᵀ and dPᵀ of keys j0 + 16 kw + rows, queries i0 + qw NQ + columns
// into p~ᵀ and dsᵀ in shared memory (rows of LP values), rounded to T.
template <class T, bool PLAIN, class C> KFN void grads_t(const TcProblem& X, const float (&st)[C::NQ / 8][4], const float (&dpt)[C::NQ / 8][4],
                                                         const float* stats, u16* spt, u16* sds, i64 b, i64 h, i64 i0, i64 j0) {
  const int kw = (threadIdx.x >> 5) % C::KW, qw = (threadIdx.x >> 5) / C::KW;
  KST_UNROLL
  for (int n = 0; n < C::NQ / 8; n++)
    KST_UNROLL
    for (int r = 0; r < 2; r++) {
      const int col = qw * C::NQ + acc_col(n, 2 * r), row = 16 * kw + acc_row(2 * r);
      float pt[2], ds[2];
      KST_UNROLL
      for (int u = 0; u < 2; u++)
        ds[u] = grad_score<PLAIN>(X, st[n][2 * r + u], dpt[n][2 * r + u], stats[col + u], stats[C::BQ + col + u], b, h, i0 + col + u, j0 + row, pt[u]);
      *reinterpret_cast<u32*>(spt + row * C::LP + col) = pack2<T>(pt[0], pt[1]);
      *reinterpret_cast<u32*>(sds + row * C::LP + col) = pack2<T>(ds[0], ds[1]);
    }
}

// dk, dv of key tile blockIdx.x of kv head g = blockIdx.y / split over the query heads of share
// blockIdx.y % split of its group; written as [B, Hkv split, Tk, hd(v)], float32 when f32 (the
// per-share partials that sum_heads adds), else in the input type.
template <class T, class C> KFN void dkdv_tc(const TcProblem& X, const u16* dout, const float* lse, const float* D, i32 split,
                                             i32 f32, void* dk, void* dv) {
  const Problem& P = X.p;
  KST_DYNAMIC_SMEM(float, stats);
  u16 *sk = reinterpret_cast<u16*>(stats + 2 * C::BQ), *sv = sk + C::BK * C::LD, *sq = sv + C::BK * C::LD;
  u16 *sdo = sq + C::BQ * C::LD, *spt = sdo + C::BQ * C::LD, *sds = spt + C::BK * C::LP;
  const int w = threadIdx.x >> 5, kw = w % C::KW, qw = w / C::KW, g = lane() >> 2, t = lane() & 3;
  const i64 b = blockIdx.z, gs = blockIdx.y, hk = gs / split, per = P.rep / split;
  const i64 j0 = i64(blockIdx.x) * C::BK, nk = P.Tk - j0 < C::BK ? P.Tk - j0 : C::BK, wj = j0 + 16 * kw;
  load_tile16<C::BK, C::HD, C::LD>(sk, X.k + ((b * P.Hkv + hk) * P.Tk + j0) * P.hd, nk, P.hd);
  load_tile16<C::BK, C::HD, C::LD>(sv, X.v + ((b * P.Hkv + hk) * P.Tk + j0) * P.hdv, nk, P.hdv);
  float ak[C::NC / 8][4], av[C::NC / 8][4];
  zero_acc(ak);
  zero_acc(av);
  // queries that see a key of the tile: causal i' >= j0, window i' < j0 + nk - 1 + window (i' = i + shift)
  i64 istart = P.causal ? j0 - P.shift : 0, iend = P.window > 0 ? j0 + nk - 1 + P.window - P.shift : P.Tq;
  istart = istart < 0 ? 0 : istart;
  iend = iend > P.Tq ? P.Tq : iend;
  const int ksq = ksteps(P.hd), ksv = ksteps(P.hdv), c0 = qw * C::NC;
  for (i64 h = hk * P.rep + (gs % split) * per; h < hk * P.rep + (gs % split + 1) * per; h++)
    for (i64 i0 = istart; i0 < iend; i0 += C::BQ) {
      const i64 nq = P.Tq - i0 < C::BQ ? P.Tq - i0 : C::BQ, row0 = (b * P.H + h) * P.Tq + i0;
      sync();  // every warp is done with the previous tile's q, dout, p~ᵀ, dsᵀ
      load_tile16<C::BQ, C::HD, C::LD>(sq, X.q + row0 * P.hd, nq, P.hd);
      load_tile16<C::BQ, C::HD, C::LD>(sdo, dout + row0 * P.hdv, nq, P.hdv);
      load_row_stats<C::BQ>(stats, P, lse, D, b, h, i0);
      cp_async_wait_all();
      sync();

      // phase 1: this warp's 16 keys x NQ queries (rows: keys, columns: queries)
      float st[C::NQ / 8][4], dpt[C::NQ / 8][4];
      zero_acc(st);
      zero_acc(dpt);
      mma_abt<T>(st, sk + 16 * kw * C::LD, C::LD, sq + qw * C::NQ * C::LD, C::LD, ksq);
      mma_abt<T>(dpt, sv + 16 * kw * C::LD, C::LD, sdo + qw * C::NQ * C::LD, C::LD, ksv);
      if (X.plain_tile(i0 + qw * C::NQ, C::NQ, wj, 16)) grads_t<T, true, C>(X, st, dpt, stats, spt, sds, b, h, i0, j0);
      else grads_t<T, false, C>(X, st, dpt, stats, spt, sds, b, h, i0, j0);
      sync();

      // phase 2: dV += P~ᵀ dO and dK += dSᵀ Q for this warp's 16 keys x columns [c0, c0 + NC)
      for (int kk = 0; kk < C::BQ / 16 && 16 * kk < nq; kk++) {
        u32 fp[4], fs[4];
        frag_a(fp, spt + 16 * kw * C::LP + 16 * kk, C::LP);
        frag_a(fs, sds + 16 * kw * C::LP + 16 * kk, C::LP);
        mma_ab<T>(av, fp, sdo + 16 * kk * C::LD + c0, C::LD, int(P.hdv) - c0);
        mma_ab<T>(ak, fs, sq + 16 * kk * C::LD + c0, C::LD, int(P.hd) - c0);
      }
    }
  cp_async_wait_all();  // nothing may be in flight when the block ends (no query sees the tile: K and V's copies)

  KST_UNROLL
  for (int r = 0; r < 2; r++) {
    const i64 j = wj + g + 8 * r, row = (b * P.Hkv * split + gs) * P.Tk + j;
    if (j >= P.Tk) continue;
    KST_UNROLL
    for (int n = 0; n < C::NC / 8; n++) {
      const int col = c0 + 8 * n + 2 * t;
      if (col < P.hd) store2<T>(dk, row * P.hd + col, P.scale * ak[n][2 * r], P.scale * ak[n][2 * r + 1], f32 != 0);
      if (col < P.hdv) store2<T>(dv, row * P.hdv + col, av[n][2 * r], av[n][2 * r + 1], f32 != 0);
    }
  }
}

// The dq pass's elementwise step: S and dP of queries i + rows (lse2 and D of them at lse2[row],
// D[row]), keys j + columns, into dS (in s).
template <bool PLAIN, int N8> KFN void grads(const TcProblem& X, float (&s)[N8][4], const float (&dp)[N8][4], const float* lse2,
                                            const float* D, i64 b, i64 h, i64 i, i64 j) {
  KST_UNROLL
  for (int n = 0; n < N8; n++)
    KST_UNROLL
    for (int e = 0; e < 4; e++) {
      float pt;
      const int row = acc_row(e);
      s[n][e] = grad_score<PLAIN>(X, s[n][e], dp[n][e], lse2[row], D[row], b, h, i + row, j + acc_col(n, e), pt);
    }
}

template <int HD_, int BK_> struct BwdQ {
  static constexpr int HD = HD_, BK = BK_, BQ = 64, LD = HD + 8, NS = BK / 8;
  // lse and D as floats, then q, dout, k, v (the TypeScript side mirrors the size)
  static constexpr unsigned SMEM = 2 * BQ * 4 + (2 * BQ + 2 * BK) * LD * 2;
};

// dq of query tile blockIdx.x (from the end) of head (b = blockIdx.z, h = blockIdx.y).
template <class T, class C> KFN void dq_tc(const TcProblem& X, const u16* dout, const float* lse, const float* D, u16* dq) {
  const Problem& P = X.p;
  KST_DYNAMIC_SMEM(float, stats);
  u16 *sq = reinterpret_cast<u16*>(stats + 2 * C::BQ), *sdo = sq + C::BQ * C::LD, *sk = sdo + C::BQ * C::LD, *sv = sk + C::BK * C::LD;
  const int w = threadIdx.x >> 5, g = lane() >> 2, t = lane() & 3;
  const i64 b = blockIdx.z, h = blockIdx.y, hk = h / P.rep;
  const i64 i0 = i64(gridDim.x - 1 - blockIdx.x) * C::BQ, nq = P.Tq - i0 < C::BQ ? P.Tq - i0 : C::BQ, wi = i0 + 16 * w;
  const i64 row0 = (b * P.H + h) * P.Tq + i0;
  load_tile16<C::BQ, C::HD, C::LD>(sq, X.q + row0 * P.hd, nq, P.hd);
  load_tile16<C::BQ, C::HD, C::LD>(sdo, dout + row0 * P.hdv, nq, P.hdv);
  load_row_stats<C::BQ>(stats, P, lse, D, b, h, i0);
  float acc[C::HD / 8][4];
  zero_acc(acc);
  const i64 jstart = P.jlo(i0), jend = P.jhi(i0 + nq - 1);
  const u16* kb = X.k + (b * P.Hkv + hk) * P.Tk * P.hd;
  const u16* vb = X.v + (b * P.Hkv + hk) * P.Tk * P.hdv;
  const int ksq = ksteps(P.hd), ksv = ksteps(P.hdv);
  for (i64 j0 = jstart; j0 < jend; j0 += C::BK) {
    sync();  // every warp is done with the previous k, v
    load_tile16<C::BK, C::HD, C::LD>(sk, kb + j0 * P.hd, jend - j0, P.hd);
    load_tile16<C::BK, C::HD, C::LD>(sv, vb + j0 * P.hdv, jend - j0, P.hdv);
    cp_async_wait_all();
    sync();
    float s[C::NS][4], dp[C::NS][4];
    zero_acc(s);
    zero_acc(dp);
    mma_abt<T>(s, sq + 16 * w * C::LD, C::LD, sk, C::LD, ksq);
    mma_abt<T>(dp, sdo + 16 * w * C::LD, C::LD, sv, C::LD, ksv);
    if (X.plain_tile(wi, 16, j0, C::BK)) grads<true>(X, s, dp, stats + 16 * w, stats + C::BQ + 16 * w, b, h, wi, j0);
    else grads<false>(X, s, dp, stats + 16 * w, stats + C::BQ + 16 * w, b, h, wi, j0);
    KST_UNROLL
    for (int kk = 0; kk < C::BK / 16; kk++) {
      u32 fa[4];
      acc_to_a<T>(fa, s, kk);
      mma_ab<T>(acc, fa, sk + 16 * kk * C::LD, C::LD, int(P.hd));
    }
  }
  cp_async_wait_all();  // no visible key: Q's and dout's copies

  KST_UNROLL
  for (int r = 0; r < 2; r++) {
    const i64 i = wi + g + 8 * r;
    if (i >= P.Tq) continue;
    KST_UNROLL
    for (int n = 0; n < C::HD / 8; n++)
      if (8 * n < P.hd) store2<T>(dq, ((b * P.H + h) * P.Tq + i) * P.hd + 8 * n + 2 * t, P.scale * acc[n][2 * r], P.scale * acc[n][2 * r + 1], false);
  }
}

// Tile shapes per head-dim bound: dkdv KW (keys per block 16 KW) and BQ, dq BK (the TypeScript
// side mirrors them). Dynamic shared memory: dkdv 39, 56, 63, 73 KB; dq 21, 37, 70, 85 KB.
#define KST_ATTN_TC_BACKWARD(NAME, T, D, KW, BQ, BKQ)                                                                  \
  KERNEL_BOUNDS(attention_tc_backward_dkdv_##NAME##_d##D, TC_THREADS, 2,                                                \
                (KST_ATTN_TC_PARAMS, const u16* dout, const float* lse, const float* Drow, i32 split, i32 f32, void* dk, \
                 void* dv)) {                                                                                           \
    dkdv_tc<T, BwdKV<D, KW, BQ>>(KST_ATTN_TC_PROBLEM, dout, lse, Drow, split, f32, dk, dv);                              \
  }                                                                                                                     \
  KERNEL_BOUNDS(attention_tc_backward_dq_##NAME##_d##D, TC_THREADS, 2,                                                  \
                (KST_ATTN_TC_PARAMS, const u16* dout, const float* lse, const float* Drow, u16* dq)) {                 \
    dq_tc<T, BwdQ<D, BKQ>>(KST_ATTN_TC_PROBLEM, dout, lse, Drow, dq);                                                    \
  }
#define KST_ATTN_TC_BACKWARD_TYPES(D, KW, BQ, BKQ)  \
  KST_ATTN_TC_BACKWARD(bf16, bf16, D, KW, BQ, BKQ) \
  KST_ATTN_TC_BACKWARD(f16, f16, D, KW, BQ, BKQ)

KST_ATTN_TC_BACKWARD_TYPES(32, 4, 64, 64)
KST_ATTN_TC_BACKWARD_TYPES(64, 4, 64, 64)
KST_ATTN_TC_BACKWARD_TYPES(128, 4, 32, 64)
KST_ATTN_TC_BACKWARD_TYPES(256, 2, 32, 16)

// D[r] = dout[r] . out[r] (16-bit rows of hdv values, float32 sums): a warp per row.
template <class T> KFN void rowdot_tc(const T* out, const T* dout, i64 rows, i64 hdv, float* D) {
  const i64 wpb = blockDim.x / 32, ln = threadIdx.x & 31;
  for (i64 r = i64(blockIdx.x) * wpb + threadIdx.x / 32; r < rows; r += i64(gridDim.x) * wpb) {
    float s = 0.0f;
    for (i64 c = ln; c < hdv; c += 32) s += to_float(dout[r * hdv + c]) * to_float(out[r * hdv + c]);
    s = warp_sum(s);
    if (ln == 0) D[r] = s;
  }
}

// dst[o, x] = sum_s part[o split + s, x] in order s = 0, 1, ... (float32 partials, dst in T).
template <class T> KFN void sum_heads_tc(const float* part, i32 split, i64 outer, i64 inner, T* dst) {
  KST_FOR(e, outer * inner) {
    const i64 o = e / inner, x = e % inner;
    float s = 0.0f;
    for (int u = 0; u < split; u++) s += part[(o * split + u) * inner + x];
    dst[e] = from_float<T>(s);
  }
}

#define KST_ATTN_TC_ROWS(NAME, T)                                                                                              \
  KERNEL(attention_tc_backward_rowdot_##NAME, (const T* out, const T* dout, i64 rows, i64 hdv, float* D)) { rowdot_tc(out, dout, rows, hdv, D); } \
  KERNEL(attention_tc_backward_sum_heads_##NAME, (const float* part, i32 split, i64 outer, i64 inner, T* dst)) {                  \
    sum_heads_tc(part, split, outer, inner, dst);                                                                                \
  }
KST_ATTN_TC_ROWS(bf16, bf16)
KST_ATTN_TC_ROWS(f16, f16)
