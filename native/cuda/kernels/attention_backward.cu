// Flash attention backward (FlashAttention-2's recurrences) in float32 SIMT, deterministic (no
// float atomics): scores are recomputed tile by tile from q, k and the forward's logsumexp,
//   D_i = do_i . o_i,  p_ij = exp(s_ij - lse_i),  p~_ij = p_ij keep_ij / (1 - drop),
//   dp_ij = keep_ij / (1 - drop) do_i . v_j,  ds_ij = p_ij (dp_ij - D_i) [1 - t_ij^2 under soft-capping],
//   dv_j = sum_i p~_ij do_i,  dk_j = scale sum_i ds_ij q_i,  dq_i = scale sum_j ds_ij k_j.
// Kernels: rowdot (D), dkdv (a block per (b, kv head or a share of its query heads, key tile),
// looping over query tiles), sum_heads (adds the per-share partial dk/dv in a fixed order), dq (a
// block per (b, h, query tile), looping over key tiles). Memory stays O(T): nothing [Tq, Tk].
#include "attention.cuh"

using namespace kst;
using namespace kst::attn;

template <class C> struct alignas(16) BackwardSmem {
  float q[C::QT * C::LD], dout[C::QT * C::LD], k[C::NK * C::LD], v[C::NK * C::LD];
  float p[C::QT * C::LP], ds[C::QT * C::LP];
  float lse[C::QT], D[C::QT];
};

// q, dout, lse (as the backward uses it: +inf on rows without a visible key, so p = 0) and D of
// query rows [i0, i0 + QT) of head (b, h) into shared memory.
template <class C> KFN void load_queries(BackwardSmem<C>& sm, const Problem& P, const float* dout, const float* lse,
                                         const float* D, i64 b, i64 h, i64 i0) {
  const i64 row0 = (b * P.H + h) * P.Tq + i0, nq = P.Tq - i0 < C::QT ? P.Tq - i0 : C::QT;
  load_tile<C, C::QT>(sm.q, P.q + row0 * P.hd, nq, P.hd);
  load_tile<C, C::QT>(sm.dout, dout + row0 * P.hdv, nq, P.hdv);
  for (int r = threadIdx.x; r < C::QT; r += C::NT) {
    const float z = r < nq ? lse[row0 + r] : pos_inf();
    sm.lse[r] = z == neg_inf() ? pos_inf() : z;
    sm.D[r] = r < nq ? D[row0 + r] : 0.0f;
  }
}

// p~ (unless dq_only) and ds of the tile pair (queries i0 .., keys j0 .. j0 + nk) into sm.p / sm.ds.
template <class C> KFN void tile_grads(BackwardSmem<C>& sm, const Problem& P, i64 b, i64 h, i64 i0, i64 j0, i64 nk, bool dq_only) {
  const int t = threadIdx.x, ri = t / C::G, kg = t % C::G;
  float s[C::RK], dp[C::RK];
  dots<C>(sm.q + ri * C::LD, sm.k + kg * C::RK * C::LD, chunks4(P.hd), s);
  dots<C>(sm.dout + ri * C::LD, sm.v + kg * C::RK * C::LD, chunks4(P.hdv), dp);
  const float z = sm.lse[ri], Dr = sm.D[ri];
  for (int r = 0; r < C::RK; r++) {
    const int jj = kg * C::RK + r;
    float dt = 1.0f;
    const float sc = jj < nk ? P.score(s[r], b, h, i0 + ri, j0 + jj, dt) : neg_inf();
    const float p = expf(sc - z);
    const float f = P.threshold == 0 ? 1.0f : p != 0.0f && P.kept(b, h, i0 + ri, j0 + jj) ? P.keep_scale : 0.0f;
    sm.ds[ri * C::LP + jj] = p == 0.0f ? 0.0f : p * (dp[r] * f - Dr) * dt;
    if (!dq_only) sm.p[ri * C::LP + jj] = p * f;
  }
}

// dk, dv of key tile blockIdx.x of kv head g = blockIdx.y / split over the query heads of share
// blockIdx.y % split of its group; written to dk/dv as [B, Hkv split, Tk, hd(v)] (split 1: the result).
template <class C> KFN void dkdv_impl(const Problem& P, const float* dout, const float* lse, const float* D, i32 split,
                                      float* dk, float* dv) {
  __shared__ BackwardSmem<C> sm;
  const i64 b = blockIdx.z, gs = blockIdx.y, g = gs / split, per = P.rep / split;
  const i64 j0 = i64(blockIdx.x) * C::NK, nk = P.Tk - j0 < C::NK ? P.Tk - j0 : C::NK;
  load_tile<C, C::NK>(sm.k, P.k + ((b * P.Hkv + g) * P.Tk + j0) * P.hd, nk, P.hd);
  load_tile<C, C::NK>(sm.v, P.v + ((b * P.Hkv + g) * P.Tk + j0) * P.hdv, nk, P.hdv);
  constexpr int RJ = C::NK / C::NW;  // keys per warp in the accumulate phase
  const int lane = threadIdx.x & 31, k0 = (threadIdx.x >> 5) * RJ;
  float ak[RJ][C::NCV], av[RJ][C::NCV];
  for (int r = 0; r < RJ; r++)
    for (int c = 0; c < C::NCV; c++) ak[r][c] = av[r][c] = 0.0f;
  // queries that see a key of the tile: causal i' >= j0, window i' < j0 + nk - 1 + window (i' = i + shift)
  i64 istart = P.causal ? j0 - P.shift : 0, iend = P.window > 0 ? j0 + nk - 1 + P.window - P.shift : P.Tq;
  istart = istart < 0 ? 0 : istart;
  iend = iend > P.Tq ? P.Tq : iend;
  for (i64 h = g * P.rep + (gs % split) * per; h < g * P.rep + (gs % split + 1) * per; h++)
    for (i64 i0 = istart; i0 < iend; i0 += C::QT) {
      sync();  // the previous tile's q, dout, p, ds are no longer read
      load_queries<C>(sm, P, dout, lse, D, b, h, i0);
      sync();
      tile_grads<C>(sm, P, b, h, i0, j0, nk, false);
      sync();
      for (int i = 0; i < C::QT; i++) {
        float qv[C::NCV], ov[C::NCV];
        for (int c = 0; c < C::NCV; c++) {
          qv[c] = sm.q[i * C::LD + lane + 32 * c];
          ov[c] = sm.dout[i * C::LD + lane + 32 * c];
        }
        KST_UNROLL
        for (int r = 0; r < RJ; r += 4) {
          const F4 ds = ld4(sm.ds + i * C::LP + k0 + r), pp = ld4(sm.p + i * C::LP + k0 + r);
          KST_UNROLL
          for (int u = 0; u < 4; u++)
            KST_UNROLL
            for (int c = 0; c < C::NCV; c++) {
              ak[r + u][c] += part(ds, u) * qv[c];
              av[r + u][c] += part(pp, u) * ov[c];
            }
        }
      }
    }
  for (int r = 0; r < RJ; r++) {
    const i64 j = j0 + k0 + r;
    if (j >= P.Tk) break;
    float* dkr = dk + ((b * P.Hkv * split + gs) * P.Tk + j) * P.hd;
    float* dvr = dv + ((b * P.Hkv * split + gs) * P.Tk + j) * P.hdv;
    for (int c = 0; c < C::NCV; c++) {
      const int col = lane + 32 * c;
      if (col < P.hd) dkr[col] = P.scale * ak[r][c];
      if (col < P.hdv) dvr[col] = av[r][c];
    }
  }
}

// dq of query tile blockIdx.x (from the end) of head (b = blockIdx.z, h = blockIdx.y).
template <class C> KFN void dq_impl(const Problem& P, const float* dout, const float* lse, const float* D, float* dq) {
  __shared__ BackwardSmem<C> sm;
  const i64 b = blockIdx.z, h = blockIdx.y, g = h / P.rep;
  const i64 i0 = i64(gridDim.x - 1 - blockIdx.x) * C::QT, nq = P.Tq - i0 < C::QT ? P.Tq - i0 : C::QT;
  load_queries<C>(sm, P, dout, lse, D, b, h, i0);
  constexpr int RQ = C::QT / C::NW;  // rows per warp in the accumulate phase
  const int lane = threadIdx.x & 31, r0 = (threadIdx.x >> 5) * RQ;
  float acc[RQ][C::NCV];
  for (int r = 0; r < RQ; r++)
    for (int c = 0; c < C::NCV; c++) acc[r][c] = 0.0f;
  const i64 jstart = P.jlo(i0), jend = P.jhi(i0 + nq - 1);
  const float* kb = P.k + (b * P.Hkv + g) * P.Tk * P.hd;
  const float* vb = P.v + (b * P.Hkv + g) * P.Tk * P.hdv;
  for (i64 j0 = jstart; j0 < jend; j0 += C::NK) {
    const i64 nk = jend - j0 < C::NK ? jend - j0 : C::NK;
    sync();  // the previous tile's k, v, ds are no longer read
    load_tile<C, C::NK>(sm.k, kb + j0 * P.hd, nk, P.hd);
    load_tile<C, C::NK>(sm.v, vb + j0 * P.hdv, nk, P.hdv);
    sync();
    tile_grads<C>(sm, P, b, h, i0, j0, nk, true);
    sync();
    for (int j = 0; j < C::NK; j += 4) {
      F4 ds[RQ];
      for (int r = 0; r < RQ; r++) ds[r] = ld4(sm.ds + (r0 + r) * C::LP + j);
      for (int u = 0; u < 4; u++) {
        float kv[C::NCV];
        for (int c = 0; c < C::NCV; c++) kv[c] = sm.k[(j + u) * C::LD + lane + 32 * c];
        for (int r = 0; r < RQ; r++)
          for (int c = 0; c < C::NCV; c++) acc[r][c] += part(ds[r], u) * kv[c];
      }
    }
  }
  for (int r = 0; r < RQ; r++) {
    const i64 i = i0 + r0 + r;
    if (i >= P.Tq) break;
    float* o = dq + ((b * P.H + h) * P.Tq + i) * P.hd;
    for (int c = 0; c < C::NCV; c++)
      if (lane + 32 * c < P.hd) o[lane + 32 * c] = P.scale * acc[r][c];
  }
}

// Tile shapes per head-dim bound (the TypeScript side mirrors QT, NK and the thread count NT).
typedef Tiles<32, 32, 32, 8> Bwd32;    // 128 threads, 27.9 KB
typedef Tiles<64, 32, 32, 8> Bwd64;    // 128 threads, 44.3 KB
typedef Tiles<128, 16, 16, 2> Bwd128;  // 128 threads, 36.5 KB
typedef Tiles<256, 8, 8, 1> Bwd256;    //  64 threads, 34.1 KB

#define KST_ATTN_BACKWARD(D)                                                                                   \
  KERNEL(attention_backward_dkdv_d##D, (KST_ATTN_PARAMS, const float* dout, const float* lse, const float* Drow, \
                                        i32 split, float* dk, float* dv)) {                                    \
    dkdv_impl<Bwd##D>(make_problem(KST_ATTN_ARGS), dout, lse, Drow, split, dk, dv);                            \
  }                                                                                                            \
  KERNEL(attention_backward_dq_d##D, (KST_ATTN_PARAMS, const float* dout, const float* lse, const float* Drow,   \
                                      float* dq)) {                                                            \
    dq_impl<Bwd##D>(make_problem(KST_ATTN_ARGS), dout, lse, Drow, dq);                                         \
  }

KST_ATTN_BACKWARD(32)
KST_ATTN_BACKWARD(64)
KST_ATTN_BACKWARD(128)
KST_ATTN_BACKWARD(256)

// D[r] = dout[r] . out[r] over rows of hdv floats: a warp per row.
KERNEL(attention_backward_rowdot, (const float* out, const float* dout, i64 rows, i64 hdv, float* D)) {
  const i64 wpb = blockDim.x / 32, lane = threadIdx.x & 31;
  for (i64 r = i64(blockIdx.x) * wpb + threadIdx.x / 32; r < rows; r += i64(gridDim.x) * wpb) {
    float s = 0.0f;
    for (i64 c = lane; c < hdv; c += 32) s += dout[r * hdv + c] * out[r * hdv + c];
    s = warp_sum(s);
    if (lane == 0) D[r] = s;
  }
}

// dst[o, x] = sum_s part[o split + s, x] in order s = 0, 1, ... (o < outer, x < inner).
KERNEL(attention_backward_sum_heads, (const float* part, i32 split, i64 outer, i64 inner, float* dst)) {
  KST_FOR(e, outer * inner) {
    const i64 o = e / inner, x = e % inner;
    float s = 0.0f;
    for (int t = 0; t < split; t++) s += part[(o * split + t) * inner + x];
    dst[e] = s;
  }
}
