// Flash attention forward on tensor cores for bfloat16 / float16 q, k, v (FlashAttention-2, Dao
// 2023; same maths, options and outputs as the float32 SIMT kernel attention.cu). Tiling: a block
// of 4 warps owns 64 query rows of one (b, h), each warp 16 of them; K and V stream through shared
// memory in tiles of BK keys (64; 32 at head dim 256), rows padded by 8 values (16 bytes) so that
// the 8 rows an ldmatrix phase reads fall in 8 distinct bank groups. cp.async overlaps the copies
// with the maths: V's tile lands while S = Q Kᵀ is computed, the next K's while O += P V is. S and
// O stay in registers as mma.m16n8k16 accumulators (float32); the online softmax works on them in
// base 2, a row's statistics reduced over the 4 lanes that share it; P, rounded to the input type,
// is the A operand of P V straight from registers. Key tiles no query of the block sees (causal,
// window) are never visited, and only tiles a visibility boundary crosses are masked per element.
// Outputs: out [B,H,Tq,hdv] in the input type, lse [B,H,Tq] float32 (-inf, and a zero row, where a
// query sees no key).
#include "attention_tc.cuh"

using namespace kst;
using namespace kst::attn;

template <int HD_, int BK_> struct FwdTc {
  static constexpr int HD = HD_, BK = BK_, BQ = 64, LD = HD + 8, NO = HD / 8, NS = BK / 8;
  static constexpr unsigned SMEM = (BQ + 2 * BK) * LD * 2;  // q, k, v tiles (the TypeScript side mirrors it)
};

template <class T, class C> KFN void forward_tc(const TcProblem& X, u16* out, float* lse) {
  const Problem& P = X.p;
  KST_DYNAMIC_SMEM(u16, sq);
  u16 *sk = sq + C::BQ * C::LD, *sv = sk + C::BK * C::LD;
  const int w = threadIdx.x >> 5, g = lane() >> 2, t = lane() & 3;
  const i64 b = blockIdx.z, h = blockIdx.y, hk = h / P.rep;
  const i64 i0 = i64(gridDim.x - 1 - blockIdx.x) * C::BQ;  // the last tiles see the most keys: start them first
  const i64 nq = P.Tq - i0 < C::BQ ? P.Tq - i0 : C::BQ, wi = i0 + 16 * w;
  const u16* kb = X.k + (b * P.Hkv + hk) * P.Tk * P.hd;
  const u16* vb = X.v + (b * P.Hkv + hk) * P.Tk * P.hdv;
  const i64 jstart = P.jlo(i0), jend = P.jhi(i0 + nq - 1);
  load_tile16<C::BQ, C::HD, C::LD>(sq, X.q + ((b * P.H + h) * P.Tq + i0) * P.hd, nq, P.hd);
  if (jstart < jend) load_tile16<C::BK, C::HD, C::LD>(sk, kb + jstart * P.hd, jend - jstart, P.hd);

  float o[C::NO][4], m[2] = {neg_inf(), neg_inf()}, l[2] = {0.0f, 0.0f};  // rows g and g + 8 of the warp
  zero_acc(o);
  const int ksq = ksteps(P.hd);
  for (i64 j0 = jstart; j0 < jend; j0 += C::BK) {
    cp_async_wait_all();
    sync();  // K's tile (and Q) landed; every warp is done with the previous V
    load_tile16<C::BK, C::HD, C::LD>(sv, vb + j0 * P.hdv, jend - j0, P.hdv);

    float s[C::NS][4];
    zero_acc(s);
    mma_abt<T>(s, sq + 16 * w * C::LD, C::LD, sk, C::LD, ksq);
    scores2(X, X.plain_tile(wi, 16, j0, C::BK), s, b, h, wi, j0);
    float mx[2] = {neg_inf(), neg_inf()};
    KST_UNROLL
    for (int n = 0; n < C::NS; n++)
      KST_UNROLL
      for (int e = 0; e < 4; e++) mx[e >> 1] = s[n][e] > mx[e >> 1] ? s[n][e] : mx[e >> 1];
    float msafe[2], sum[2] = {0.0f, 0.0f};
    KST_UNROLL
    for (int r = 0; r < 2; r++) {
      KST_UNROLL
      for (int x = 1; x < 4; x <<= 1) {
        const float y = shfl_xor(mx[r], x);
        mx[r] = y > mx[r] ? y : mx[r];
      }
      const float mn = mx[r] > m[r] ? mx[r] : m[r];
      msafe[r] = mn == neg_inf() ? 0.0f : mn;  // no visible key yet: p = 0
      const float alpha = exp2f(m[r] - msafe[r]);
      m[r] = mn;
      l[r] *= alpha;
      KST_UNROLL
      for (int n = 0; n < C::NO; n++) o[n][2 * r] *= alpha, o[n][2 * r + 1] *= alpha;
    }
    KST_UNROLL
    for (int n = 0; n < C::NS; n++)
      KST_UNROLL
      for (int e = 0; e < 4; e++) {
        s[n][e] = exp2f(s[n][e] - msafe[e >> 1]);
        sum[e >> 1] += s[n][e];
      }
    l[0] += sum[0], l[1] += sum[1];  // per lane (the 4 lanes of a row add theirs at the end); l keeps dropped p
    drop(P, s, b, h, wi, j0);

    cp_async_wait_all();
    sync();  // V's tile landed; every warp is done with K
    if (j0 + C::BK < jend) load_tile16<C::BK, C::HD, C::LD>(sk, kb + (j0 + C::BK) * P.hd, jend - j0 - C::BK, P.hd);
    KST_UNROLL
    for (int kk = 0; kk < C::BK / 16; kk++) {
      u32 fa[4];
      acc_to_a<T>(fa, s, kk);
      mma_ab<T>(o, fa, sv + 16 * kk * C::LD, C::LD, int(P.hdv));
    }
  }
  cp_async_wait_all();  // nothing may be in flight when the block ends (no key visible: Q's copy)

  KST_UNROLL
  for (int r = 0; r < 2; r++) {
    l[r] += shfl_xor(l[r], 1);
    l[r] += shfl_xor(l[r], 2);
    const i64 i = wi + g + 8 * r;
    if (i >= P.Tq) continue;
    const bool none = !(l[r] > 0.0f) || m[r] == neg_inf();  // no visible key: out 0, lse -inf
    const float inv = none ? 0.0f : P.keep_scale / l[r];
    u16* orow = out + ((b * P.H + h) * P.Tq + i) * P.hdv;
    KST_UNROLL
    for (int n = 0; n < C::NO; n++)
      if (8 * n < P.hdv) store2<T>(orow, 8 * n + 2 * t, o[n][2 * r] * inv, o[n][2 * r + 1] * inv, false);
    if (t == 0) lse[(b * P.H + h) * P.Tq + i] = none ? neg_inf() : m[r] * LN2 + logf(l[r]);
  }
}

// Tile shapes per head-dim bound (dynamic shared memory: 15, 28, 52, 68 KB).
#define KST_ATTN_TC_FORWARD(NAME, T, D, BK, MIN_BLOCKS)                                                                   \
  KERNEL_BOUNDS(attention_tc_forward_##NAME##_d##D, TC_THREADS, MIN_BLOCKS, (KST_ATTN_TC_PARAMS, u16 * out, float* lse)) { \
    forward_tc<T, FwdTc<D, BK>>(KST_ATTN_TC_PROBLEM, out, lse);                                                            \
  }
#define KST_ATTN_TC_FORWARD_TYPES(D, BK, MIN_BLOCKS)  \
  KST_ATTN_TC_FORWARD(bf16, bf16, D, BK, MIN_BLOCKS) \
  KST_ATTN_TC_FORWARD(f16, f16, D, BK, MIN_BLOCKS)

KST_ATTN_TC_FORWARD_TYPES(32, 64, 3)
KST_ATTN_TC_FORWARD_TYPES(64, 64, 3)
KST_ATTN_TC_FORWARD_TYPES(128, 64, 2)
KST_ATTN_TC_FORWARD_TYPES(256, 32, 1)
