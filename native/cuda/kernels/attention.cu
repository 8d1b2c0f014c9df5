// Flash attention forward (FlashAttention-2, Dao 2023) in float32 SIMT: a block per (b, h, tile
// of QT queries) loops over the visible key tiles with an online softmax, so no [Tq, Tk] matrix
// exists anywhere; it writes out [B,H,Tq,hdv] and the logsumexp [B,H,Tq] the backward needs
// (-inf and a zero row where a query sees no key, as native/attention.cc). Per key tile:
//   s = softcap(scale q kᵀ) + mask (hidden: -inf),  m' = max(m, rowmax s),  p = exp(s - m'),
//   l = l e^(m - m') + rowsum p,  O = O e^(m - m') + (p keep) V;  at the end out = O / ((1 - drop) l).
#include "attention.cuh"

using namespace kst;
using namespace kst::attn;

template <class C> struct alignas(16) ForwardSmem {
  float q[C::QT * C::LD], k[C::NK * C::LD], v[C::NK * C::LD], p[C::QT * C::LP];
  float alpha[C::QT], m[C::QT], l[C::QT];
};

template <class C> KFN void forward_impl(const Problem& P, float* out, float* lse) {
  __shared__ ForwardSmem<C> sm;
  const i64 b = blockIdx.z, h = blockIdx.y, g = h / P.rep;
  const i64 i0 = i64(gridDim.x - 1 - blockIdx.x) * C::QT;  // the last tiles see the most keys: start them first
  const i64 nq = P.Tq - i0 < C::QT ? P.Tq - i0 : C::QT;
  const float* qb = P.q + ((b * P.H + h) * P.Tq + i0) * P.hd;
  const float* kb = P.k + (b * P.Hkv + g) * P.Tk * P.hd;
  const float* vb = P.v + (b * P.Hkv + g) * P.Tk * P.hdv;
  load_tile<C, C::QT>(sm.q, qb, nq, P.hd);

  // score phase: row ri, keys kg RK .. (the G lanes of a row keep identical copies of m and l)
  const int t = threadIdx.x, ri = t / C::G, kg = t % C::G;
  float m = neg_inf(), l = 0.0f;
  // accumulate phase: warp w owns rows w RQ .., lane the columns lane + 32 c
  constexpr int RQ = C::QT / C::NW;
  const int lane = t & 31, r0 = (t >> 5) * RQ;
  float acc[RQ][C::NCV];
  for (int r = 0; r < RQ; r++)
    for (int c = 0; c < C::NCV; c++) acc[r][c] = 0.0f;

  const i64 jstart = P.jlo(i0), jend = P.jhi(i0 + nq - 1);
  const int n4 = chunks4(P.hd);
  for (i64 j0 = jstart; j0 < jend; j0 += C::NK) {
    const i64 nk = jend - j0 < C::NK ? jend - j0 : C::NK;
    sync();  // the previous tile's k, v, p are no longer read
    load_tile<C, C::NK>(sm.k, kb + j0 * P.hd, nk, P.hd);
    load_tile<C, C::NK>(sm.v, vb + j0 * P.hdv, nk, P.hdv);
    sync();
    float s[C::RK];
    dots<C>(sm.q + ri * C::LD, sm.k + kg * C::RK * C::LD, n4, s);
    float mt = neg_inf();
    for (int r = 0; r < C::RK; r++) {
      float dt = 1.0f;
      const i64 j = j0 + kg * C::RK + r;
      s[r] = r + kg * C::RK < nk ? P.score(s[r], b, h, i0 + ri, j, dt) : neg_inf();
      mt = s[r] > mt ? s[r] : mt;
    }
    for (int x = 1; x < C::G; x <<= 1) {
      float o = shfl_xor(mt, x);
      mt = o > mt ? o : mt;
    }
    const float mn = mt > m ? mt : m, msafe = mn == neg_inf() ? 0.0f : mn;  // no visible key yet: p = 0
    float sum = 0.0f;
    for (int r = 0; r < C::RK; r++) {
      s[r] = expf(s[r] - msafe);
      sum += s[r];
    }
    for (int x = 1; x < C::G; x <<= 1) sum += shfl_xor(sum, x);
    const float a = expf(m - msafe);
    l = l * a + sum;
    m = mn;
    for (int r = 0; r < C::RK; r++) {
      const int jj = kg * C::RK + r;
      sm.p[ri * C::LP + jj] = s[r] != 0.0f && !P.kept(b, h, i0 + ri, j0 + jj) ? 0.0f : s[r];  // l keeps dropped p
    }
    if (kg == 0) sm.alpha[ri] = a;
    sync();
    for (int r = 0; r < RQ; r++) {
      const float ar = sm.alpha[r0 + r];
      for (int c = 0; c < C::NCV; c++) acc[r][c] *= ar;
    }
    for (int j = 0; j < C::NK; j += 4) {
      F4 p4[RQ];
      for (int r = 0; r < RQ; r++) p4[r] = ld4(sm.p + (r0 + r) * C::LP + j);
      for (int u = 0; u < 4; u++) {
        float vv[C::NCV];
        for (int c = 0; c < C::NCV; c++) vv[c] = sm.v[(j + u) * C::LD + lane + 32 * c];
        for (int r = 0; r < RQ; r++)
          for (int c = 0; c < C::NCV; c++) acc[r][c] += part(p4[r], u) * vv[c];
      }
    }
  }
  if (kg == 0) {
    sm.m[ri] = m;
    sm.l[ri] = l;
  }
  sync();
  for (int r = 0; r < RQ; r++) {
    const i64 i = i0 + r0 + r;
    if (i >= P.Tq) break;
    const float lr = sm.l[r0 + r], mr = sm.m[r0 + r];
    const bool none = lr == 0.0f;  // no visible key: out 0, lse -inf (a NaN score gives NaN, as in PyTorch)
    const float inv = none ? 0.0f : P.keep_scale / lr;
    float* o = out + ((b * P.H + h) * P.Tq + i) * P.hdv;
    for (int c = 0; c < C::NCV; c++)
      if (lane + 32 * c < P.hdv) o[lane + 32 * c] = none ? 0.0f : acc[r][c] * inv;
    if (lane == 0) lse[(b * P.H + h) * P.Tq + i] = none ? neg_inf() : mr + logf(lr);
  }
}

// Tile shapes per head-dim bound (the TypeScript side mirrors QT and the thread count NT):
// shared memory stays under the 48 KB of a static allocation, and registers allow 4 blocks of
// 128 threads per SM.
typedef Tiles<32, 32, 32, 8> Fwd32;    // 128 threads, 18.4 KB
typedef Tiles<64, 32, 32, 8> Fwd64;    // 128 threads, 30.7 KB
typedef Tiles<128, 32, 16, 4> Fwd128;  // 128 threads, 36.7 KB
typedef Tiles<256, 16, 8, 2> Fwd256;   //  64 threads, 34.3 KB

#define KST_ATTN_FORWARD(D, MIN_BLOCKS)                                                                      \
  KERNEL_BOUNDS(attention_forward_d##D, Fwd##D::NT, MIN_BLOCKS, (KST_ATTN_PARAMS, float* out, float* lse)) { \
    forward_impl<Fwd##D>(make_problem(KST_ATTN_ARGS), out, lse);                                              \
  }

KST_ATTN_FORWARD(32, 4)
KST_ATTN_FORWARD(64, 4)
KST_ATTN_FORWARD(128, 4)
KST_ATTN_FORWARD(256, 1)
