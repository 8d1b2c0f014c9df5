// Flash attention backward on tensor cores for bfloat16 / float16 (the recurrences of the float32
// SIMT attention_backward.cu; FlashAttention-2's kernel plan, Dao 2023). Scores are recomputed from
// q, k and the forward's logsumexp; products run on mma.m16n8k16 with float32 accumulators, P~ and dS
// rounded to the input type as their operands (as FlashAttention-2 does).
// dkdv: a block per (b, kv head or a share of its query heads, tile of BK = 16 KW keys), looping over
//   the query heads and query tiles of BQ that see the keys; each step's q, dout and row statistics
//   are double-buffered (cp.async: step n + 1's copies run during step n). Phase 1: warp (kw, qw)
//   computes Sᵀ = K Qᵀ and dPᵀ = V dOᵀ for its 16 keys x BQ / QW queries in registers, turns them into
//   P~ᵀ and dSᵀ and writes both to shared memory; phase 2: warp (kw, cw) accumulates dV += P~ᵀ dO and
//   dK += dSᵀ Q for its 16 keys x HD / QW columns in registers across the whole loop; phase 3 (unless
//   deterministic): dQ += dS K of the step's queries x all columns, added with float32 atomics into a
//   zeroed float32 buffer (dq_convert scales and rounds it). 5 products per (query, key) pair; the
//   deterministic path leaves dq to attention_tc_dq.cu (3 more). hd 256 splits the columns over two
//   warps (KW = 2) so that the accumulators fit in registers.
// rowdot: D = rowsum(dO o) in float32, with lse in base 2 beside it; sum_heads: adds the per-share
// float32 partial dk/dv in a fixed order into the input type. Rows of every shared tile are padded by
// 8 values (16 bytes). The _full kernels take masks, soft-capping and dropout; the others none.
#include "attention_tc.cuh"

using namespace kst;
using namespace kst::attn;

template <int HD_, int KW_, int BQ_, int NB_, bool FULL_> struct BwdKV {
  static constexpr int HD = HD_, KW = KW_, BK = 16 * KW, BQ = BQ_, QW = 4 / KW, NB = NB_;  // NB buffers of q, dout, stats
  static constexpr int NQ = BQ / QW, NC = HD / QW, LD = HD + 8, LP = BQ + 8;
  // dq phase: warps as QM groups of 16 queries x 4 / QM column groups of NCQ columns, in chunks of CH
  // (at most 64; 16 at hd 256, where dk and dv take half the registers)
  static constexpr int QM = BQ / 16, NCQ = HD * QM / 4, CH = NCQ < 64 ? NCQ : HD >= 256 ? 16 : 64;
  static constexpr bool FULL = FULL_;
  // row statistics (NB buffers of BQ (lse2, D) float pairs), then k, v, (q, dout) NB times, p~ᵀ, dsᵀ
  // (the TypeScript side mirrors the size)
  static constexpr unsigned SMEM = 8 * NB * BQ + (2 * BK * LD + 2 * NB * BQ * LD + 2 * BK * LP) * 2;
  static_assert(KW * QW == 4 && NQ % 16 == 0 && NC % 16 == 0 && 4 % QM == 0 && NCQ % CH == 0 && CH % 16 == 0, "dkdv tile shape");
};

// Phase 1, PLAIN or VISIBLE tiles: the warp's Sᵀ (raw dots of keys wj + rows, queries i0 + c0 +
// columns) -> probabilities p in place (0 where hidden).
template <int MODE, int N8> KFN void probs_t(const TcProblem& X, float (&s)[1][N8][4], const float* stats, int c0, i64 i0, i64 wj) {
  KST_UNROLL
  for (int n = 0; n < N8; n++)
    KST_UNROLL
    for (int u = 0; u < 2; u++) {
      const int col = c0 + acc_col(n, u);
      const float lse2 = stats[2 * col];
      RowKeys rk;
      rk.lo = 0, rk.hi = 16;
      if (MODE != PLAIN) rk = row_keys(X.p, i0 + col, wj, 16);
      KST_UNROLL
      for (int r = 0; r < 2; r++) {
        float& x = s[0][n][2 * r + u];
        const int row = acc_row(2 * r);
        x = row >= rk.lo && row < rk.hi ? exp2f(x * X.scale2 - lse2) : 0.0f;
      }
    }
}

// Phase 1's writes: from p (probs_t) and dPᵀ, P~ᵀ = p f and dSᵀ = p (dp f - D) rounded to T into spt
// and sds (rows of LP values; f the dropout factor keep / (1 - drop), 1 without DROP).
template <class T, bool DROP, class C>
KFN void write_grads_t(const TcProblem& X, const float (&p)[1][C::NQ / 8][4], const float (&dp)[1][C::NQ / 8][4], const float* stats, u16* spt, u16* sds,
                       int r0, int c0, i64 b, i64 h, i64 i0, i64 wj) {
  KST_UNROLL
  for (int n = 0; n < C::NQ / 8; n++)
    KST_UNROLL
    for (int r = 0; r < 2; r++) {
      const int row = acc_row(2 * r), col = c0 + acc_col(n, 0);
      float pt[2], ds[2];
      KST_UNROLL
      for (int u = 0; u < 2; u++) {
        const float pe = p[0][n][2 * r + u], D = stats[2 * (col + u) + 1];
        float f = 1.0f;
        if (DROP) f = pe != 0.0f && kept_at(X.p, drop_index(X.p, b, h, i0 + col + u, wj + row)) ? X.p.keep_scale : 0.0f;
        pt[u] = pe * f;
        ds[u] = pe == 0.0f ? 0.0f : pe * (dp[0][n][2 * r + u] * f - D);
      }
      *reinterpret_cast<u32*>(spt + (r0 + row) * C::LP + col) = pack2<T>(pt[0], pt[1]);
      *reinterpret_cast<u32*>(sds + (r0 + row) * C::LP + col) = pack2<T>(ds[0], ds[1]);
    }
}

// Phase 1, GENERAL tiles (masks, soft-capping), element by element (which keeps fewer per-column
// values live than row_keys / mask_row would): P~ᵀ = p f and dSᵀ = p (dp f - D) dt (dt from the
// soft-cap) rounded to T into spt and sds as write_grads_t does.
template <class T, class C>
KFN void grads_t_general(const TcProblem& X, const float (&st)[1][C::NQ / 8][4], const float (&dpt)[1][C::NQ / 8][4], const float* stats, u16* spt,
                         u16* sds, int r0, int c0, i64 b, i64 h, i64 i0, i64 wj) {
  const Problem& P = X.p;
  KST_UNROLL
  for (int n = 0; n < C::NQ / 8; n++)
    KST_UNROLL
    for (int r = 0; r < 2; r++) {
      const int row = acc_row(2 * r), col = c0 + acc_col(n, 0);
      float pt[2], ds[2];
      KST_UNROLL
      for (int u = 0; u < 2; u++) {
        const i64 i = i0 + col + u, j = wj + row;
        float dt = 1.0f, p = 0.0f;
        if (X.visible(i, j)) p = exp2f(general_score2(P, st[0][n][2 * r + u], mask_row(P, b, h, i), j, dt) - stats[2 * (col + u)]);
        const float f = P.threshold == 0 ? 1.0f : p != 0.0f && kept_at(P, drop_index(P, b, h, i, j)) ? P.keep_scale : 0.0f;
        pt[u] = p * f;
        ds[u] = p == 0.0f ? 0.0f : p * (dpt[0][n][2 * r + u] * f - stats[2 * (col + u) + 1]) * dt;
      }
      *reinterpret_cast<u32*>(spt + (r0 + row) * C::LP + col) = pack2<T>(pt[0], pt[1]);
      *reinterpret_cast<u32*>(sds + (r0 + row) * C::LP + col) = pack2<T>(ds[0], ds[1]);
    }
}

// Phase 3: dq rows row0 + [0, nq) (float32, rows of hd) += dS K for this warp's 16 queries x NCQ
// columns over the tile's keys (dS from dSᵀ in shared memory through ldmatrix.trans).
template <class T, class C> KFN void dq_atomic(const Problem& P, const u16* sds, const u16* sk, float* dq_acc, i64 row0, i64 nq, i64 nk) {
  const int w = threadIdx.x >> 5, qm = w % C::QM, g = lane() >> 2, t = lane() & 3, r0 = 16 * qm;
  if (r0 >= nq) return;
  KST_UNROLL
  for (int ch = 0; ch < C::NCQ / C::CH; ch++) {
    const int c0 = (w / C::QM) * C::NCQ + ch * C::CH;
    if (c0 >= P.hd) break;
    float acc[1][C::CH / 8][4];
    zero_acc(acc);
    KST_UNROLL
    for (int kk = 0; kk < C::BK / 16; kk++) {
      if (16 * kk >= nk) break;
      u32 fa[1][4];
      frag_a_t(fa[0], sds + 16 * kk * C::LP + r0, C::LP);
      mma_ab<T>(acc, fa, sk + 16 * kk * C::LD + c0, C::LD, P.hd - c0);
    }
    KST_UNROLL
    for (int r = 0; r < 2; r++) {
      const int q = r0 + g + 8 * r;
      if (q >= nq) continue;
      float* drow = dq_acc + (row0 + q) * P.hd;
      KST_UNROLL
      for (int n = 0; n < C::CH / 8; n++) {
        const int col = c0 + 8 * n + 2 * t;
        if (col < P.hd) atomic_add2(drow + col, acc[0][n][2 * r], acc[0][n][2 * r + 1]);
      }
    }
  }
}

// dk, dv of key tile blockIdx.z of kv head g = blockIdx.x / split over the query heads of share
// blockIdx.x % split of its group (batch blockIdx.y); written as [B, Hkv split, Tk, hd(v)], float32 when f32 (the
// per-share partials that sum_heads adds), else in the input type. dq_acc: null, or the float32 dq
// sums (zeroed) that phase 3 adds into.
template <class T, class C>
KFN void dkdv_tc(const TcProblem& X, const u16* dout, const float* stats2, i32 split, i32 f32, void* dk, void* dv, float* dq_acc) {
  const Problem& P = X.p;
  KST_DYNAMIC_SMEM(float, sst);  // buffer u's statistics at sst + 2u BQ
  u16 *sk = reinterpret_cast<u16*>(sst + 2 * C::NB * C::BQ), *sv = sk + C::BK * C::LD;
  u16* const sqd = sv + C::BK * C::LD;  // buffer u: q at sqd + 2u BQ LD, dout after it
  u16 *spt = sqd + 2 * C::NB * C::BQ * C::LD, *sds = spt + C::BK * C::LP;
  const int w = threadIdx.x >> 5, kw = w % C::KW, qw = w / C::KW, g = lane() >> 2, t = lane() & 3;
  // grid (Hkv split, B, key tiles): the first key tiles (under a causal mask the ones the most queries
  // see) of every head start first
  const i64 b = blockIdx.y, gs = blockIdx.x, hk = gs / split, per = P.rep / split, h0 = hk * P.rep + (gs % split) * per;
  const i64 j0 = i64(blockIdx.z) * C::BK, nk = min64(P.Tk - j0, C::BK), wj = j0 + 16 * kw;
  load_tile16<C::BK, C::HD, C::LD>(sk, X.k + ((b * P.Hkv + hk) * P.Tk + j0) * P.hd, nk, P.hd);
  load_tile16<C::BK, C::HD, C::LD>(sv, X.v + ((b * P.Hkv + hk) * P.Tk + j0) * P.hdv, nk, P.hdv);
  float ak[1][C::NC / 8][4], av[1][C::NC / 8][4];
  zero_acc(ak);
  zero_acc(av);
  // queries that see a key of the tile: causal i' >= j0, window i' < j0 + nk - 1 + window (i' = i + shift)
  i64 istart = P.causal ? j0 - P.shift : 0, iend = P.window > 0 ? j0 + nk - 1 + P.window - P.shift : P.Tq;
  istart = istart < 0 ? 0 : istart;
  iend = iend > P.Tq ? P.Tq : iend;
  const i64 nqt = iend > istart ? (iend - istart + C::BQ - 1) / C::BQ : 0, steps = per * nqt;  // (head, query tile) steps
  auto load_step = [&](int u, i64 s) {
    const i64 h = h0 + s / nqt, i0 = istart + (s % nqt) * C::BQ, nq = min64(P.Tq - i0, C::BQ), row0 = (b * P.H + h) * P.Tq + i0;
    u16* sq = sqd + 2 * u * C::BQ * C::LD;
    load_tile16<C::BQ, C::HD, C::LD>(sq, X.q + row0 * P.hd, nq, P.hd);
    load_tile16<C::BQ, C::HD, C::LD>(sq + C::BQ * C::LD, dout + row0 * P.hdv, nq, P.hdv);
    load_row_stats<C::BQ>(sst + 2 * u * C::BQ, stats2, row0, nq);
  };
  if (steps > 0) load_step(0, 0);
  const int c0 = qw * C::NC;
  int u = 0;
  for (i64 s = 0; s < steps; s++, u = (u + 1) % C::NB) {
    const i64 h = h0 + s / nqt, i0 = istart + (s % nqt) * C::BQ, nq = min64(P.Tq - i0, C::BQ);
    cp_async_wait_all();
    sync();  // step s's tiles (and k, v) landed; every warp is done with step s - 1 (its buffer, p~ᵀ, dsᵀ)
    if (C::NB == 2 && s + 1 < steps) load_step(u ^ 1, s + 1);
    const u16 *sq = sqd + 2 * u * C::BQ * C::LD, *sdo = sq + C::BQ * C::LD;
    const float* stats = sst + 2 * u * C::BQ;

    // phase 1: this warp's 16 keys x NQ queries (rows: keys, columns: queries)
    {
      float st[1][C::NQ / 8][4], dpt[1][C::NQ / 8][4];
      zero_acc(st);
      zero_acc(dpt);
      mma_abt<T, 1, C::NQ / 8, C::HD / 16>(st, sk + 16 * kw * C::LD, C::LD, sq + qw * C::NQ * C::LD, C::LD, P.hd);
      mma_abt<T, 1, C::NQ / 8, C::HD / 16>(dpt, sv + 16 * kw * C::LD, C::LD, sdo + qw * C::NQ * C::LD, C::LD, P.hdv);
      const int mode = X.tile_mode(i0 + qw * C::NQ, C::NQ, wj, 16);
      if (C::FULL && mode == GENERAL) {
        grads_t_general<T, C>(X, st, dpt, stats, spt, sds, 16 * kw, qw * C::NQ, b, h, i0, wj);
      } else {
        if (mode == PLAIN) probs_t<PLAIN>(X, st, stats, qw * C::NQ, i0, wj);
        else probs_t<VISIBLE>(X, st, stats, qw * C::NQ, i0, wj);
        if (C::FULL && P.threshold != 0) write_grads_t<T, true, C>(X, st, dpt, stats, spt, sds, 16 * kw, qw * C::NQ, b, h, i0, wj);
        else write_grads_t<T, false, C>(X, st, dpt, stats, spt, sds, 16 * kw, qw * C::NQ, b, h, i0, wj);
      }
    }
    sync();

    // phase 2: dV += P~ᵀ dO and dK += dSᵀ Q for this warp's 16 keys x columns [c0, c0 + NC)
    KST_UNROLL
    for (int kk = 0; kk < C::BQ / 16; kk++) {
      if (16 * kk >= nq) break;
      u32 fp[1][4], fs[1][4];
      frag_a(fp[0], spt + 16 * kw * C::LP + 16 * kk, C::LP);
      frag_a(fs[0], sds + 16 * kw * C::LP + 16 * kk, C::LP);
      mma_ab<T>(av, fp, sdo + 16 * kk * C::LD + c0, C::LD, P.hdv - c0);
      mma_ab<T>(ak, fs, sq + 16 * kk * C::LD + c0, C::LD, P.hd - c0);
    }
    // phase 3: dQ += dS K (float32 atomics)
    if (dq_acc) dq_atomic<T, C>(P, sds, sk, dq_acc, (b * P.H + h) * P.Tq + i0, nq, nk);
    if (C::NB == 1 && s + 1 < steps) {
      sync();  // one buffer: every warp is done with this step's before the next one's copies start
      load_step(0, s + 1);
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
      if (col < P.hd) store2<T>(dk, row * P.hd + col, P.scale * ak[0][n][2 * r], P.scale * ak[0][n][2 * r + 1], f32 != 0);
      if (col < P.hdv) store2<T>(dv, row * P.hdv + col, av[0][n][2 * r], av[0][n][2 * r + 1], f32 != 0);
    }
  }
}

// Tile shapes per head-dim bound (the TypeScript side mirrors them): KW (keys per block 16 KW), BQ and
// buffers NB. hd 256 keeps one buffer so that it fits in the 99 KB of shared memory a block may have
// on sm_86 / sm_89 (49, 73, 79, 71 KB), and its _full kernel takes 16 keys x 64 queries (so that its
// accumulators fit in registers).
#define KST_ATTN_TC_BACKWARD(NAME, T, D, KW, BQ, NB, FULL, SUFFIX)                                                   \
  KERNEL_BOUNDS(attention_tc_backward_dkdv_##NAME##_d##D##SUFFIX, TC_THREADS, 2,                                         \
                (KST_ATTN_TC_PARAMS, const u16* dout, const float* stats2, i32 split, i32 f32, void* dk, void* dv,      \
                 float* dq_acc)) {                                                                                       \
    dkdv_tc<T, BwdKV<D, KW, BQ, NB, FULL>>(KST_ATTN_TC_PROBLEM, dout, stats2, split, f32, dk, dv, dq_acc);                \
  }
#define KST_ATTN_TC_BACKWARD_TYPES(D, KW, BQ, NB, FULL, SUFFIX) \
  KST_ATTN_TC_BACKWARD(bf16, bf16, D, KW, BQ, NB, FULL, SUFFIX) \
  KST_ATTN_TC_BACKWARD(f16, f16, D, KW, BQ, NB, FULL, SUFFIX)

KST_ATTN_TC_BACKWARD_TYPES(32, 4, 64, 2, false, )
KST_ATTN_TC_BACKWARD_TYPES(64, 4, 64, 2, false, )
KST_ATTN_TC_BACKWARD_TYPES(128, 4, 32, 2, false, )
KST_ATTN_TC_BACKWARD_TYPES(256, 2, 32, 1, false, )
KST_ATTN_TC_BACKWARD_TYPES(32, 4, 64, 2, true, _full)
KST_ATTN_TC_BACKWARD_TYPES(64, 4, 64, 2, true, _full)
KST_ATTN_TC_BACKWARD_TYPES(128, 4, 32, 2, true, _full)
KST_ATTN_TC_BACKWARD_TYPES(256, 1, 64, 1, true, _full)

// stats2[2r] = lse[r] in base 2 (+inf where it is -inf: no visible key, so p = 0), stats2[2r + 1] =
// D[r] = dout[r] . out[r] (16-bit rows of hdv values, float32 sums): a warp per row.
template <class T> KFN void rowdot_tc(const T* out, const T* dout, const float* lse, i64 rows, i64 hdv, float* stats2) {
  const i64 wpb = blockDim.x / 32, ln = threadIdx.x & 31;
  for (i64 r = i64(blockIdx.x) * wpb + threadIdx.x / 32; r < rows; r += i64(gridDim.x) * wpb) {
    float s = 0.0f;
    for (i64 c = ln; c < hdv; c += 32) s += to_float(dout[r * hdv + c]) * to_float(out[r * hdv + c]);
    s = warp_sum(s);
    if (ln == 0) {
      const float z = lse[r];
      stats2[2 * r] = z == neg_inf() ? pos_inf() : z * LOG2E;
      stats2[2 * r + 1] = s;
    }
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

#define KST_ATTN_TC_ROWS(NAME, T)                                                                                         \
  KERNEL(attention_tc_backward_rowdot_##NAME, (const T* out, const T* dout, const float* lse, i64 rows, i64 hdv, float* stats2)) { \
    rowdot_tc(out, dout, lse, rows, hdv, stats2);                                                                          \
  }                                                                                                                        \
  KERNEL(attention_tc_backward_sum_heads_##NAME, (const float* part, i32 split, i64 outer, i64 inner, T* dst)) {             \
    sum_heads_tc(part, split, outer, inner, dst);                                                                           \
  }                                                                                                                        \
  KERNEL(attention_tc_backward_dq_convert_##NAME, (const float* acc, i64 n, float scale, T* dq)) {                          \
    KST_FOR(e, n) dq[e] = from_float<T>(scale * acc[e]);                                                                    \
  }
KST_ATTN_TC_ROWS(bf16, bf16)
KST_ATTN_TC_ROWS(f16, f16)
