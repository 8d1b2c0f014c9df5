// What the tensor-core attention kernels share (attention_tc.cu: forward; attention_tc_backward.cu):
// the problem with 16-bit q, k, v (bfloat16 or float16; scores, softmax and accumulators stay
// float32), tile loads by cp.async into rows padded by 8 values, and warp-level products on
// mma.m16n8k16 fed by ldmatrix. Every kernel here runs 4 warps (128 threads) per block.
#pragma once
#include "attention.cuh"

namespace kst {
namespace attn {

#define KST_ATTN_TC_PARAMS const u16 *q16, const u16 *k16, const u16 *v16, KST_ATTN_REST_PARAMS
#define KST_ATTN_TC_PROBLEM make_tc_problem(q16, k16, v16, make_problem(nullptr, nullptr, nullptr, KST_ATTN_REST_ARGS))

constexpr int TC_THREADS = 128;
constexpr float LOG2E = 1.4426950408889634f, LN2 = 0.6931471805599453f;

struct TcProblem {
  Problem p;
  const u16 *q, *k, *v;
  bool plain;    // no mask and no soft-capping: where every key of a tile is visible, a score is scale * dot
  float scale2;  // scale log2(e): the kernels work in base 2 (exp2f)

  // Whether every (query, key) of rows [i, i + ni) x keys [j, j + nj) is in the problem and visible
  // without a mask or soft-cap, so that the scores need no per-element test.
  KFN bool plain_tile(i64 i, i64 ni, i64 j, i64 nj) const {
    return plain && i + ni <= p.Tq && j + nj <= p.Tk && j >= p.jlo(i + ni - 1) && j + nj <= p.jhi(i);
  }
  // The score of (b, h, i, j) in base 2 from the raw dot product (Problem::score times log2 e).
  template <bool PLAIN> KFN float score2(float dot, i64 b, i64 h, i64 i, i64 j, float& dt) const {
    dt = 1.0f;
    return PLAIN ? dot * scale2 : p.score(dot, b, h, i, j, dt) * LOG2E;
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
  for (int e = threadIdx.x; e < ROWS * CPR; e += TC_THREADS) {
    const int r = e / CPR, c = (e % CPR) * 8;
    u16* d = dst + r * LD + c;
    if (r < valid && c < dim) cp_async16(d, src + r * dim + c);
    else zero16(d);
  }
}

// Fragments from shared memory (ldmatrix; see common.cuh). frag_a: the A fragment of the 16x16
// block at `base` (row-major, stride ld). frag_b_rows: B fragments of two n-tiles (n, n + 8) where
// B[k][n] = base[n ld + k] (rows of the source are B's columns: K in Q Kᵀ). frag_b_cols: the same
// where B[k][n] = base[k ld + n] (rows of the source are B's k: V in P V). Registers 0-1 hold the
// first n-tile's b0, b1, registers 2-3 the second's.
KFN void frag_a(u32* a, const u16* base, int ld) { ldmatrix_x4(a, base + (lane() & 15) * ld + (lane() >> 4) * 8); }
KFN void frag_b_rows(u32* b, const u16* base, int ld) {
  ldmatrix_x4(b, base + ((lane() & 7) + (lane() >> 4) * 8) * ld + ((lane() >> 3) & 1) * 8);
}
KFN void frag_b_cols(u32* b, const u16* base, int ld) { ldmatrix_x4_trans(b, base + (lane() & 15) * ld + (lane() >> 4) * 8); }

// acc (16 x 8 N8) += A Bᵀ over k-steps [0, ks) of 16: A's 16 rows at `a`, Bᵀ's 8 N8 rows at `bt`
// (both row-major with k along the row: Q Kᵀ, dO Vᵀ, K Qᵀ, V dOᵀ).
template <class T, int N8> KFN void mma_abt(float (&acc)[N8][4], const u16* a, int lda, const u16* bt, int ldb, int ks) {
  for (int kk = 0; kk < ks; kk++) {
    u32 fa[4];
    frag_a(fa, a + kk * 16, lda);
    KST_UNROLL
    for (int np = 0; np < N8 / 2; np++) {
      u32 fb[4];
      frag_b_rows(fb, bt + np * 16 * ldb + kk * 16, ldb);
      mma_16816<T>(acc[2 * np], fa, fb);
      mma_16816<T>(acc[2 * np + 1], fa, fb + 2);
    }
  }
}

// acc (16 x 8 N8) += A B for one k-step with A in registers and B's 16 rows at `b` (row-major, n
// along the row: V in P V, K in dS K, dO in Pᵀ dO); n-tile pairs at or past column `ncols` are skipped.
template <class T, int N8> KFN void mma_ab(float (&acc)[N8][4], const u32* fa, const u16* b, int ldb, int ncols) {
  KST_UNROLL
  for (int np = 0; np < N8 / 2; np++)
    if (np * 16 < ncols) {
      u32 fb[4];
      frag_b_cols(fb, b + np * 16, ldb);
      mma_16816<T>(acc[2 * np], fa, fb);
      mma_16816<T>(acc[2 * np + 1], fa, fb + 2);
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

template <int N8> KFN void zero_acc(float (&acc)[N8][4]) {
  KST_UNROLL
  for (int n = 0; n < N8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
}

KFN int ksteps(i64 dim) { return int((dim + 15) / 16); }

// lse (base 2; +inf on rows without a visible key, so that p = 0) and D of query rows [i0, i0 + n)
// of head (b, h) into stats[0, N) and stats[N, 2N); rows past the problem get +inf and 0.
template <int N> KFN void load_row_stats(float* stats, const Problem& P, const float* lse, const float* D, i64 b, i64 h, i64 i0) {
  const i64 row0 = (b * P.H + h) * P.Tq + i0, nq = P.Tq - i0;
  for (int r = threadIdx.x; r < N; r += TC_THREADS) {
    const float z = r < nq ? lse[row0 + r] : pos_inf();
    stats[r] = z == neg_inf() ? pos_inf() : z * LOG2E;
    stats[N + r] = r < nq ? D[row0 + r] : 0.0f;
  }
}

// Accumulator element e of n-tile n as (row, column) offsets: rows g, g + 8, columns 8n + 2t (+1).
KFN int acc_row(int e) { return (lane() >> 2) + 8 * (e >> 1); }
KFN int acc_col(int n, int e) { return 8 * n + 2 * (lane() & 3) + (e & 1); }

// s (16 x 8 N8 raw dot products of queries i + acc_row, keys j + acc_col) -> base-2 scores, with the
// per-element visibility / mask / soft-cap only where the tile needs it (two unrolled bodies).
template <bool PLAIN, int N8> KFN void scores2_as(const TcProblem& X, float (&s)[N8][4], i64 b, i64 h, i64 i, i64 j) {
  KST_UNROLL
  for (int n = 0; n < N8; n++)
    KST_UNROLL
    for (int e = 0; e < 4; e++) {
      float dt;
      s[n][e] = X.score2<PLAIN>(s[n][e], b, h, i + acc_row(e), j + acc_col(n, e), dt);
    }
}
template <int N8> KFN void scores2(const TcProblem& X, bool plain, float (&s)[N8][4], i64 b, i64 h, i64 i, i64 j) {
  if (plain) scores2_as<true>(X, s, b, h, i, j);
  else scores2_as<false>(X, s, b, h, i, j);
}

// Dropout of probabilities p (the layout of scores2): dropped elements become 0.
template <int N8> KFN void drop(const Problem& P, float (&p)[N8][4], i64 b, i64 h, i64 i, i64 j) {
  if (P.threshold == 0) return;
  KST_UNROLL
  for (int n = 0; n < N8; n++)
    KST_UNROLL
    for (int e = 0; e < 4; e++)
      if (p[n][e] != 0.0f && !P.kept(b, h, i + acc_row(e), j + acc_col(n, e))) p[n][e] = 0.0f;
}

// The backward's per-element step: from s (raw dot) and dp (dO . v) of (b, h, i, j), the
// probability p~ = p keep / (1 - drop) (returned through pt) and ds = p (dp keep / (1 - drop) - D) dt.
template <bool PLAIN> KFN float grad_score(const TcProblem& X, float s, float dp, float lse2, float Drow, i64 b, i64 h, i64 i, i64 j, float& pt) {
  float dt;
  const float p = exp2f(X.score2<PLAIN>(s, b, h, i, j, dt) - lse2);
  const float f = X.p.threshold == 0 ? 1.0f : p != 0.0f && X.p.kept(b, h, i, j) ? X.p.keep_scale : 0.0f;
  pt = p * f;
  return p == 0.0f ? 0.0f : p * (dp * f - Drow) * dt;
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
