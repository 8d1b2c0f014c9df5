// What the tensor-core attention kernels share (attention_tc.cu: forward; attention_tc_backward.cu):
// the problem with 16-bit q, k, v (bfloat16 or float16; scores, softmax and accumulators stay
// float32), tile loads by cp.async into rows padded by 8 values, warp-level products on
// mma.m16n8k16 fed by ldmatrix (fully unrolled over compile-time tile shapes), and the per-tile
// choice of how much per-element work a score needs. Every kernel here runs 4 warps (128 threads).
#pragma once
#include "attention.cuh"

namespace kst {
namespace attn {

#define KST_ATTN_TC_PARAMS const u16 *q16, const u16 *k16, const u16 *v16, KST_ATTN_REST_PARAMS
#define KST_ATTN_TC_PROBLEM make_tc_problem(q16, k16, v16, make_problem(nullptr, nullptr, nullptr, KST_ATTN_REST_ARGS))

constexpr int TC_THREADS = 128;
constexpr float LOG2E = 1.4426950408889634f, LN2 = 0.6931471805599453f;

// How a tile's scores are formed (TcProblem::tile_mode): PLAIN, every (query, key) of the tile in
// the problem and visible with no mask or soft-cap: score = scale dot; VISIBLE, no mask or soft-cap
// but a causal / window / problem edge crosses the tile: a visibility test per element; GENERAL:
// Problem::score per element (mask, soft-cap).
enum { PLAIN = 0, VISIBLE = 1, GENERAL = 2 };

struct TcProblem {
  Problem p;
  const u16 *q, *k, *v;
  bool plain;    // no mask and no soft-capping
  float scale2;  // scale log2(e): the kernels work in base 2 (exp2f)

  // The mode of rows [i, i + ni) x keys [j, j + nj).
  KFN int tile_mode(i64 i, i64 ni, i64 j, i64 nj) const {
    if (!plain) return GENERAL;
    const bool all = i + ni <= p.Tq && j + nj <= p.Tk && j >= p.jlo(i + ni - 1) && j + nj <= p.jhi(i);
    return all ? PLAIN : VISIBLE;
  }
  // Whether query i sees key j (Problem::jlo <= j < Problem::jhi, both in the problem), i, j >= 0.
  KFN bool visible(i64 i, i64 j) const {
    const i64 d = i + p.shift - j;  // causal: d >= 0; window: d < window
    return i < p.Tq && j < p.Tk && (!p.causal || d >= 0) && (p.window <= 0 || d < p.window);
  }
  // The score of (b, h, i, j) in base 2 from the raw dot product (Problem::score times log2 e).
  template <int MODE> KFN float score2(float dot, i64 b, i64 h, i64 i, i64 j, float& dt) const {
    dt = 1.0f;
    if (MODE == PLAIN) return dot * scale2;
    if (MODE == VISIBLE) return visible(i, j) ? dot * scale2 : neg_inf();
    return p.score(dot, b, h, i, j, dt) * LOG2E;
  }
};

KFN TcProblem make_tc_problem(const u16* q, const u16* k, const u16* v, const Problem& p) {
  TcProblem x;
  x.p = p;
  x.q = q, x.k = k, x.v = v;
  x.plain = p.mask == nullptr && !(p.softcap > 0.0f);
  x.scale2 = p.scale * LOG2E;
  return x;
}

KFN int lane() { return threadIdx.x & 31; }
KFN i64 min64(i64 a, i64 b) { return a < b ? a : b; }

// 16 zero bytes at a 16-byte aligned address.
struct alignas(16) Zero16 {
  u32 w[4];
};
KFN void zero16(u16* d) {
  Zero16 z;
  z.w[0] = z.w[1] = z.w[2] = z.w[3] = 0u;
  *reinterpret_cast<Zero16*>(d) = z;
}

// Rows [0, ROWS) x columns [0, HD) of a tile into dst (rows of LD values) from src (rows of `dim`
// values, a multiple of 8, 16-byte aligned; `valid` rows present): cp.async for what is present,
// zeros for the rest (missing rows and columns add nothing to any product). Completes at
// cp_async_wait_all() + sync().
template <int ROWS, int HD, int LD> KFN void load_tile16(u16* dst, const u16* src, i64 valid, i64 dim) {
  constexpr int CPR = HD / 8;  // 16-byte chunks per row
  KST_UNROLL
  for (int e0 = 0; e0 < ROWS * CPR; e0 += TC_THREADS) {
    const int e = e0 + int(threadIdx.x), r = e / CPR, c = (e % CPR) * 8;
    if (ROWS * CPR % TC_THREADS != 0 && e >= ROWS * CPR) break;
    u16* d = dst + r * LD + c;
    if (r < valid && c < dim) cp_async16(d, src + r * dim + c);
    else zero16(d);
  }
}

// Per-row statistics of query rows [i0, i0 + N) of head row `row0` (= (b H + h) Tq + i0) into
// stats[0, N) as (lse in base 2, D) pairs (from the float2 rows attention_tc_backward_rowdot
// wrote; by cp.async); rows past the problem get (+inf, 0), so that their p is 0.
template <int N> KFN void load_row_stats(float* stats, const float* stats2, i64 row0, i64 nq) {
  for (int r = threadIdx.x; r < N; r += TC_THREADS) {
    if (r < nq) cp_async8(stats + 2 * r, stats2 + 2 * (row0 + r));
    else stats[2 * r] = pos_inf(), stats[2 * r + 1] = 0.0f;
  }
}

// Fragments from shared memory (ldmatrix; see common.cuh). frag_a: the A fragment of the 16x16
// block at `base` (row-major, stride ld). frag_a_t: the same where the block is stored transposed
// (A[m][k] = base[k ld + m]: dS from dSᵀ). frag_b_rows: B fragments of two n-tiles (n, n + 8) where
// B[k][n] = base[n ld + k] (rows of the source are B's columns: K in Q Kᵀ). frag_b_cols: the same
// where B[k][n] = base[k ld + n] (rows of the source are B's k: V in P V). Registers 0-1 hold the
// first n-tile's b0, b1, registers 2-3 the second's.
KFN void frag_a(u32* a, const u16* base, int ld) { ldmatrix_x4(a, base + (lane() & 15) * ld + (lane() >> 4) * 8); }
KFN void frag_a_t(u32* a, const u16* base, int ld) {
  ldmatrix_x4_trans(a, base + ((lane() & 7) + (lane() >> 4) * 8) * ld + ((lane() >> 3) & 1) * 8);
}
KFN void frag_b_rows(u32* b, const u16* base, int ld) {
  ldmatrix_x4(b, base + ((lane() & 7) + (lane() >> 4) * 8) * ld + ((lane() >> 3) & 1) * 8);
}
KFN void frag_b_cols(u32* b, const u16* base, int ld) { ldmatrix_x4_trans(b, base + (lane() & 15) * ld + (lane() >> 4) * 8); }

// acc (MT m-tiles of 16 x 8 N8) += A Bᵀ over k-steps [0, KS) of 16 that start below `dim` (the rest
// are zero columns): m-tile mt's rows of A at a + 16 mt lda, Bᵀ's 8 N8 rows at bt (both row-major
// with k along the row: Q Kᵀ, dO Vᵀ, K Qᵀ, V dOᵀ). Each B fragment serves all MT m-tiles.
template <class T, int MT, int N8, int KS> KFN void mma_abt(float (&acc)[MT][N8][4], const u16* a, int lda, const u16* bt, int ldb, i64 dim) {
  KST_UNROLL
  for (int kk = 0; kk < KS; kk++) {
    if (kk * 16 >= dim) break;
    u32 fa[MT][4];
    KST_UNROLL
    for (int mt = 0; mt < MT; mt++) frag_a(fa[mt], a + 16 * mt * lda + kk * 16, lda);
    KST_UNROLL
    for (int np = 0; np < N8 / 2; np++) {
      u32 fb[4];
      frag_b_rows(fb, bt + np * 16 * ldb + kk * 16, ldb);
      KST_UNROLL
      for (int mt = 0; mt < MT; mt++) {
        mma_16816<T>(acc[mt][2 * np], fa[mt], fb);
        mma_16816<T>(acc[mt][2 * np + 1], fa[mt], fb + 2);
      }
    }
  }
}

// acc (MT m-tiles of 16 x 8 N8) += A B for one k-step with A in registers and B's 16 rows at `b`
// (row-major, n along the row: V in P V, K in dS K, dO in Pᵀ dO); n-tile pairs at or past column
// `ncols` are skipped (zero columns).
template <class T, int MT, int N8> KFN void mma_ab(float (&acc)[MT][N8][4], const u32 (&fa)[MT][4], const u16* b, int ldb, i64 ncols) {
  KST_UNROLL
  for (int np = 0; np < N8 / 2; np++)
    if (np * 16 < ncols) {
      u32 fb[4];
      frag_b_cols(fb, b + np * 16, ldb);
      KST_UNROLL
      for (int mt = 0; mt < MT; mt++) {
        mma_16816<T>(acc[mt][2 * np], fa[mt], fb);
        mma_16816<T>(acc[mt][2 * np + 1], fa[mt], fb + 2);
      }
    }
}

// The A fragment of k-step kk made of accumulator tiles 2kk and 2kk+1 (the C layout of two
// n-tiles is the A layout of one 16x16 block), rounded to T.
template <class T, int N8> KFN void acc_to_a(u32* fa, const float (&acc)[N8][4], int kk) {
  fa[0] = pack2<T>(acc[2 * kk][0], acc[2 * kk][1]);
  fa[1] = pack2<T>(acc[2 * kk][2], acc[2 * kk][3]);
  fa[2] = pack2<T>(acc[2 * kk + 1][0], acc[2 * kk + 1][1]);
  fa[3] = pack2<T>(acc[2 * kk + 1][2], acc[2 * kk + 1][3]);
}

template <int MT, int N8> KFN void zero_acc(float (&acc)[MT][N8][4]) {
  KST_UNROLL
  for (int mt = 0; mt < MT; mt++)
    KST_UNROLL
    for (int n = 0; n < N8; n++) acc[mt][n][0] = acc[mt][n][1] = acc[mt][n][2] = acc[mt][n][3] = 0.0f;
}

// Accumulator element e of n-tile n as (row, column) offsets: rows g, g + 8, columns 8n + 2t (+1).
KFN int acc_row(int e) { return (lane() >> 2) + 8 * (e >> 1); }
KFN int acc_col(int n, int e) { return 8 * n + 2 * (lane() & 3) + (e & 1); }

// The keys of a tile that query i sees, as offsets [lo, hi) from the tile's first key j0 (clamped to
// [0, nk]; empty past the problem): the per-row half of a visibility test.
struct RowKeys {
  int lo, hi;
};
KFN RowKeys row_keys(const Problem& P, i64 i, i64 j0, int nk) {
  RowKeys r;
  if (i >= P.Tq) {
    r.lo = r.hi = 0;
    return r;
  }
  const i64 lo = P.jlo(i) - j0, hi = P.jhi(i) - j0;
  r.lo = lo < 0 ? 0 : lo > nk ? nk : int(lo);
  r.hi = hi < 0 ? 0 : hi > nk ? nk : int(hi);
  return r;
}

// Problem::score of a visible key from its raw dot product, in base 2, with the row's mask pointer
// (mask + b ms0 + h ms1 + i ms2, null without a mask): the same operations in the same order.
KFN float general_score2(const Problem& P, float dot, const float* mrow, i64 j, float& dt) {
  float z = P.scale * dot;
  dt = 1.0f;
  if (P.softcap > 0.0f) {
    const float t = tanhf(z / P.softcap);
    z = P.softcap * t;
    dt = 1.0f - t * t;
  }
  if (mrow) z += mrow[j * P.ms3];
  return z * LOG2E;
}
KFN const float* mask_row(const Problem& P, i64 b, i64 h, i64 i) { return P.mask ? P.mask + b * P.ms0 + h * P.ms1 + i * P.ms2 : nullptr; }

// s (MT m-tiles of 16 x 8 N8 raw dot products of queries i + 16 mt + acc_row, keys j + acc_col) ->
// base-2 scores the way MODE says (one unrolled body per mode; hidden keys get -inf).
template <int MODE, int MT, int N8> KFN void scores2_as(const TcProblem& X, float (&s)[MT][N8][4], i64 b, i64 h, i64 i, i64 j) {
  KST_UNROLL
  for (int mt = 0; mt < MT; mt++)
    KST_UNROLL
    for (int r = 0; r < 2; r++) {
      const i64 row = i + 16 * mt + acc_row(2 * r);
      RowKeys rk;
      rk.lo = rk.hi = 0;
      const float* mrow = nullptr;
      if (MODE != PLAIN) rk = row_keys(X.p, row, j, 8 * N8);
      if (MODE == GENERAL) mrow = mask_row(X.p, b, h, row);
      KST_UNROLL
      for (int n = 0; n < N8; n++)
        KST_UNROLL
        for (int u = 0; u < 2; u++) {
          float& x = s[mt][n][2 * r + u];
          const int c = acc_col(n, u);
          float dt;
          if (MODE == PLAIN) x = x * X.scale2;
          else if (c < rk.lo || c >= rk.hi) x = neg_inf();
          else x = MODE == VISIBLE ? x * X.scale2 : general_score2(X.p, x, mrow, j + c, dt);
        }
    }
}
// FULL: GENERAL tiles may occur (else the problem has no mask or soft-cap and that body is left out).
template <bool FULL, int MT, int N8> KFN void scores2(const TcProblem& X, int mode, float (&s)[MT][N8][4], i64 b, i64 h, i64 i, i64 j) {
  if (mode == PLAIN) scores2_as<PLAIN>(X, s, b, h, i, j);
  else if (!FULL || mode == VISIBLE) scores2_as<VISIBLE>(X, s, b, h, i, j);
  else scores2_as<GENERAL>(X, s, b, h, i, j);
}

// Whether dropout keeps the element of uniform index idx (Problem::kept with the index given).
KFN bool kept_at(const Problem& P, u64 idx) {
  const Philox4 w = philox(P.seed_lo, P.seed_hi, P.counter + idx / 4);
  const u32 r = u32(idx % 4), word = r == 0 ? w.w[0] : r == 1 ? w.w[1] : r == 2 ? w.w[2] : w.w[3];
  return (word >> 8) >= P.threshold;
}
// The uniform index of (b, h, i, j) (Problem::kept's), from which a row's keys count up.
KFN u64 drop_index(const Problem& P, i64 b, i64 h, i64 i, i64 j) { return u64(((b * P.H + h) * P.Tq + i) * P.Tk + j); }

// Dropout of probabilities p (the layout of scores2): dropped elements become 0.
template <int MT, int N8> KFN void drop(const Problem& P, float (&p)[MT][N8][4], i64 b, i64 h, i64 i, i64 j) {
  KST_UNROLL
  for (int mt = 0; mt < MT; mt++)
    KST_UNROLL
    for (int r = 0; r < 2; r++) {
      const u64 base = drop_index(P, b, h, i + 16 * mt + acc_row(2 * r), j);
      KST_UNROLL
      for (int n = 0; n < N8; n++)
        KST_UNROLL
        for (int u = 0; u < 2; u++) {
          float& x = p[mt][n][2 * r + u];
          if (x != 0.0f && !kept_at(P, base + acc_col(n, u))) x = 0.0f;
        }
    }
}

// Stores two adjacent values of a row (a 4-byte aligned pair) as T, or as float32 when f32.
template <class T> KFN void store2(void* base, i64 at, float x, float y, bool f32) {
  if (f32) {
    float* p = static_cast<float*>(base) + at;
    p[0] = x;
    p[1] = y;
  } else {
    *reinterpret_cast<u32*>(static_cast<u16*>(base) + at) = pack2<T>(x, y);
  }
}

}  // namespace attn
}  // namespace kst
