// Attention for one query position (a decode step), split over the keys (flash-decoding, Dao et
// al. 2023): the tile kernels give a block a tile of 32 (float32) or 64 (tensor cores) query rows,
// of which a decode step fills one, and one block per head leaves most SMs idle at batch 1. Here a
// block takes one query head and one share ("split") of the keys:
//   scores:  each warp takes every DEC_WARPS-th chunk of 32 keys, a key per lane (the lane reads
//            its key's row), with the online softmax of its chunks (running max m, sum l);
//   values:  a head dim per lane (lane + 32 i), each value row read whole by the warp, coalesced;
//   merge:   the warps' (m, l, o) through shared memory into the split's, as
//            m = max m_w, l = sum l_w e^(m_w - m), o = sum o_w e^(m_w - m).
// One split writes out and lse itself; several write their (m, l, o) to a scratch buffer that
// attention_decode_merge combines the same way. Scores are the tile kernels' (Problem::score:
// causal and window visibility, soft-capping, the additive mask); no dropout (attention.ts sends
// dropout to the tile kernels). A query that sees no key gets out 0 and lse -inf; a NaN score
// gives NaN, as in PyTorch. float32, bfloat16 or float16 q, k, v and out; lse, the mask and all
// arithmetic float32. Heads of one GQA group read the same rows at about the same time, so the
// group's sharing comes from the caches.
#include "attention.cuh"

using namespace kst;
using namespace kst::attn;

#define DEC_WARPS 4
#define DEC_THREADS (32 * DEC_WARPS)
#define DEC_DL (256 / 32)  // head dims per lane (head dims up to 256)

// q, k, v, out: T (float, bf16 or f16); the problem's float pointers are not used for them.
struct DecodeArgs {
  const void *q, *k, *v;
  void* out;
  float* lse;
  float *part_o, *part_ml;  // with several splits: o [B H S, hdv] and (m, l) [B H S, 2]
  i64 per;                  // keys per split (a multiple of 32), from the first visible key
  i32 splits, vec;          // vec: rows are 16-byte aligned, in whole 16-byte pieces
};

// q . k_row over hd values (q in shared memory as float32).
template <class T> KFN float row_dot(const float* q, const T* k, i64 hd, bool vec) {
  float dot = 0.0f;
  if (vec) {
    constexpr int per = 16 / sizeof(T);  // values per 16-byte load
    for (i64 d = 0; d < hd; d += per) {
      const Vec16 w = load16(k + d);
      if constexpr (sizeof(T) == 4) {
        for (int u = 0; u < 4; u++) dot += q[d + u] * bits_to_float(w.w[u]);
      } else {
        for (int u = 0; u < 4; u++) {
          dot += q[d + 2 * u] * half_bits_to_f32<T>(u16(w.w[u] & 0xffffu));
          dot += q[d + 2 * u + 1] * half_bits_to_f32<T>(u16(w.w[u] >> 16));
        }
      }
    }
  } else {
    for (i64 d = 0; d < hd; d++) dot += q[d] * to_float(k[d]);
  }
  return dot;
}

// The weight of a partial result (m, l) in a merge with maximum M: 0 for one that saw no key (l 0),
// else e^(m - M); a NaN l (a NaN score) keeps a finite weight or 0, so the NaN reaches the sums.
KFN float merge_weight(float m, float l, float M) {
  const float Msafe = M == neg_inf() ? 0.0f : M;
  return l == 0.0f ? 0.0f : expf(m - Msafe);
}

// out = o / l and lse = m + log l for one row, or 0 and -inf where no key was visible.
template <class T> KFN void finish(const float* o, float m, float l, i64 hdv, T* out, float* lse, int t, int nt) {
  const bool none = l == 0.0f;
  const float inv = none ? 0.0f : 1.0f / l;
  for (i64 d = t; d < hdv; d += nt) out[d] = from_float<T>(none ? 0.0f : o[d] * inv);
  if (t == 0) *lse = none ? neg_inf() : m + logf(l);
}

template <class T> KFN void decode_split(const Problem& P, const DecodeArgs& A) {
  __shared__ float qs[256];
  __shared__ float part_o[DEC_WARPS][256];
  __shared__ float part_m[DEC_WARPS], part_l[DEC_WARPS];
  __shared__ float merged[256];
  const i64 h = blockIdx.x, b = blockIdx.y, s = blockIdx.z, g = h / P.rep, row = b * P.H + h;
  const int t = threadIdx.x, lane = t & 31, w = t >> 5;
  const T* q = static_cast<const T*>(A.q) + row * P.hd;
  const T* kb = static_cast<const T*>(A.k) + (b * P.Hkv + g) * P.Tk * P.hd;
  const T* vb = static_cast<const T*>(A.v) + (b * P.Hkv + g) * P.Tk * P.hdv;
  for (i64 d = t; d < P.hd; d += DEC_THREADS) qs[d] = to_float(q[d]);
  sync();

  // this split's share of the keys query 0 sees, [lo, hi) (attention.ts divides hi - lo into shares of per)
  const i64 lo = P.jlo(0), hi = P.jhi(0);
  const i64 ja = lo + s * A.per, jb = ja + A.per < hi ? ja + A.per : hi;
  float m = neg_inf(), l = 0.0f, acc[DEC_DL];
  KST_UNROLL for (int i = 0; i < DEC_DL; i++) acc[i] = 0.0f;
  for (i64 j0 = ja + i64(w) * 32; j0 < jb; j0 += 32 * DEC_WARPS) {
    const i64 j = j0 + lane;
    float z = neg_inf(), dt;
    if (j < jb) z = P.score(row_dot(qs, kb + j * P.hd, P.hd, A.vec != 0), b, h, 0, j, dt);
    const float mn = fmaxf(m, warp_max(z)), msafe = mn == neg_inf() ? 0.0f : mn;  // nothing visible yet: p = 0
    const float p = expf(z - msafe), alpha = expf(m - msafe);
    l = l * alpha + warp_sum(p);
    m = mn;
    KST_UNROLL for (int i = 0; i < DEC_DL; i++) acc[i] *= alpha;
    const int keys = jb - j0 < 32 ? int(jb - j0) : 32;
    for (int r = 0; r < keys; r++) {
      const float pr = shfl(p, r);
      const T* vr = vb + (j0 + r) * P.hdv;
      KST_UNROLL for (int i = 0; i < DEC_DL; i++) {
        const i64 d = lane + 32 * i;
        if (d < P.hdv) acc[i] += pr * to_float(vr[d]);
      }
    }
  }
  KST_UNROLL for (int i = 0; i < DEC_DL; i++) {
    const i64 d = lane + 32 * i;
    if (d < P.hdv) part_o[w][d] = acc[i];
  }
  if (lane == 0) part_m[w] = m, part_l[w] = l;
  sync();
  float M = neg_inf();
  for (int x = 0; x < DEC_WARPS; x++) M = fmaxf(M, part_m[x]);
  float L = 0.0f, f[DEC_WARPS];
  for (int x = 0; x < DEC_WARPS; x++) {
    f[x] = merge_weight(part_m[x], part_l[x], M);
    L += f[x] * part_l[x];
  }
  for (i64 d = t; d < P.hdv; d += DEC_THREADS) {
    float o = 0.0f;
    for (int x = 0; x < DEC_WARPS; x++) o += f[x] * part_o[x][d];
    merged[d] = o;
  }
  if (A.splits == 1) {
    sync();
    finish<T>(merged, M, L, P.hdv, static_cast<T*>(A.out) + row * P.hdv, A.lse + row, t, DEC_THREADS);
    return;
  }
  const i64 slot = row * A.splits + s;
  for (i64 d = t; d < P.hdv; d += DEC_THREADS) A.part_o[slot * P.hdv + d] = merged[d];
  if (t == 0) A.part_ml[2 * slot] = M, A.part_ml[2 * slot + 1] = L;
}

// The splits' (m, l, o) of each (b, h) row into out and lse: a block per row.
template <class T> KFN void decode_merge(const float* part_o, const float* part_ml, i32 splits, i64 hdv, T* out, float* lse) {
  const i64 row = i64(blockIdx.y) * gridDim.x + blockIdx.x;
  const float* ml = part_ml + 2 * row * splits;
  float M = neg_inf();
  for (int x = 0; x < splits; x++) M = fmaxf(M, ml[2 * x]);
  float L = 0.0f;
  for (int x = 0; x < splits; x++) L += merge_weight(ml[2 * x], ml[2 * x + 1], M) * ml[2 * x + 1];
  const bool none = L == 0.0f;
  const float inv = none ? 0.0f : 1.0f / L;
  for (i64 d = threadIdx.x; d < hdv; d += blockDim.x) {
    float o = 0.0f;
    for (int x = 0; x < splits; x++) o += merge_weight(ml[2 * x], ml[2 * x + 1], M) * part_o[(row * splits + x) * hdv + d];
    out[row * hdv + d] = from_float<T>(none ? 0.0f : o * inv);
  }
  if (threadIdx.x == 0) lse[row] = none ? neg_inf() : M + logf(L);
}

#define KST_ATTN_DECODE_PARAMS                                                                                         \
  const void *q, const void *k, const void *v, KST_ATTN_REST_PARAMS, void *out, float *lse, float *part_o, float *part_ml, \
      i64 per, i32 splits, i32 vec
#define KST_ATTN_DECODE(NAME, T)                                                                                    \
  KERNEL_BOUNDS(attention_decode_##NAME, DEC_THREADS, 4, (KST_ATTN_DECODE_PARAMS)) {                                 \
    const Problem P = make_problem(nullptr, nullptr, nullptr, KST_ATTN_REST_ARGS);                                  \
    const DecodeArgs A{q, k, v, out, lse, part_o, part_ml, per, splits, vec};                                        \
    decode_split<T>(P, A);                                                                                           \
  }                                                                                                                  \
  KERNEL(attention_decode_merge_##NAME, (const float* part_o, const float* part_ml, i32 splits, i64 hdv, void* out, float* lse)) { \
    decode_merge<T>(part_o, part_ml, splits, hdv, static_cast<T*>(out), lse);                                        \
  }

KST_ATTN_DECODE(f32, float)
KST_ATTN_DECODE(bf16, bf16)
KST_ATTN_DECODE(f16, f16)
