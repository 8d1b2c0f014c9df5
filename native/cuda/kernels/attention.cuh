// What the attention kernels share (attention.cu: forward; attention_backward.cu: dk/dv and dq):
// the problem as the TypeScript side packs it (src/backend/cuda/kernels/attention.ts), the
// visibility / mask / soft-cap / dropout of one score, tile loads into shared memory and the
// score dot products. Reference: src/backend/ref/attention.ts; CPU: native/attention.cc.
#pragma once
#include "common.cuh"

namespace kst {
namespace attn {

// The launch parameters every attention kernel starts with, in this order: q, k, v (float32 here,
// 16-bit in attention_tc*.cu), then the rest.
#define KST_ATTN_REST_PARAMS                                                                                    \
  const float *mask, i64 ms0, i64 ms1, i64 ms2, i64 ms3, i32 B, i32 H, i32 Hkv, i32 Tq, i32 Tk, i32 hd, i32 hdv, \
      float scale, i32 causal, i64 window, float softcap, u32 seed_lo, u32 seed_hi, u64 counter, u32 threshold,  \
      float keep_scale
#define KST_ATTN_REST_ARGS \
  mask, ms0, ms1, ms2, ms3, B, H, Hkv, Tq, Tk, hd, hdv, scale, causal, window, softcap, seed_lo, seed_hi, counter, threshold, keep_scale
#define KST_ATTN_PARAMS const float *q, const float *k, const float *v, KST_ATTN_REST_PARAMS
#define KST_ATTN_ARGS q, k, v, KST_ATTN_REST_ARGS

KFN float neg_inf() { return bits_to_float(0xff800000u); }
KFN float pos_inf() { return bits_to_float(0x7f800000u); }

// One attention call: q [B,H,Tq,hd], k [B,Hkv,Tk,hd], v [B,Hkv,Tk,hdv] contiguous; the additive
// mask (may be null) through strides ms* (0 on broadcast dims); dropout keeps element (b,h,i,j)
// iff (word >> 8) >= threshold for uniform index ((b H + h) Tq + i) Tk + j (threshold 0: off).
struct Problem {
  const float *q, *k, *v, *mask;
  i64 ms0, ms1, ms2, ms3;
  i64 B, H, Hkv, Tq, Tk, hd, hdv, rep, shift, window;
  float scale, softcap, keep_scale;
  bool causal;
  u32 seed_lo, seed_hi, threshold;
  u64 counter;

  // Keys visible to query i: jlo(i) <= j < jhi(i) (i' = i + Tk - Tq: causal j <= i', window j > i' - window).
  KFN i64 jhi(i64 i) const {
    if (!causal) return Tk;
    i64 e = i + shift + 1;
    return e < 0 ? 0 : e > Tk ? Tk : e;
  }
  KFN i64 jlo(i64 i) const {
    if (window <= 0) return 0;
    i64 s = i + shift - window + 1;
    return s < 0 ? 0 : s > Tk ? Tk : s;
  }

  // The score of (b, h, i, j) from the raw dot product: softcap(scale dot) + mask, -inf where the
  // key is hidden or (i, j) lies outside the problem; dt = 1 - tanh^2 under soft-capping, else 1.
  KFN float score(float dot, i64 b, i64 h, i64 i, i64 j, float& dt) const {
    dt = 1.0f;
    if (i >= Tq || j >= Tk || j < jlo(i) || j >= jhi(i)) return neg_inf();
    float z = scale * dot;
    if (softcap > 0.0f) {
      float t = tanhf(z / softcap);
      z = softcap * t;
      dt = 1.0f - t * t;
    }
    if (mask) z += mask[b * ms0 + h * ms1 + i * ms2 + j * ms3];
    return z;
  }

  // Whether dropout keeps (b, h, i, j) (always without dropout).
  KFN bool kept(i64 b, i64 h, i64 i, i64 j) const {
    if (threshold == 0) return true;
    u64 idx = u64(((b * H + h) * Tq + i) * Tk + j);
    Philox4 w = philox(seed_lo, seed_hi, counter + idx / 4);
    const u32 r = u32(idx % 4), word = r == 0 ? w.w[0] : r == 1 ? w.w[1] : r == 2 ? w.w[2] : w.w[3];  // no local-memory indexing
    return (word >> 8) >= threshold;
  }
};

KFN Problem make_problem(KST_ATTN_PARAMS) {
  Problem p;
  p.q = q, p.k = k, p.v = v, p.mask = mask;
  p.ms0 = ms0, p.ms1 = ms1, p.ms2 = ms2, p.ms3 = ms3;
  p.B = B, p.H = H, p.Hkv = Hkv, p.Tq = Tq, p.Tk = Tk, p.hd = hd, p.hdv = hdv;
  p.rep = Hkv > 0 ? H / Hkv : 1;
  p.shift = i64(Tk) - Tq;
  p.window = window;
  p.scale = scale, p.softcap = softcap, p.keep_scale = keep_scale;
  p.causal = causal != 0;
  p.seed_lo = seed_lo, p.seed_hi = seed_hi, p.threshold = threshold, p.counter = counter;
  return p;
}

// Tile shapes: QT queries x NK keys per tile, head dims up to DMAX. In the score phase thread t
// owns query row t / G of the tile and keys RK (t % G) .. + RK - 1 (G = NK / RK lanes per row,
// adjacent, so row statistics reduce with shuffles). Shared tiles are rows of LD floats (16-byte
// aligned, padded by 4 so that rows read by different lanes fall in different banks).
template <int DMAX_, int QT_, int NK_, int RK_> struct Tiles {
  static constexpr int DMAX = DMAX_, QT = QT_, NK = NK_, RK = RK_;
  static constexpr int G = NK / RK, NT = QT * G, NW = NT / 32;
  static constexpr int LD = DMAX + 4, LP = NK + 4, NCV = DMAX / 32;
  // rows (queries or keys) per warp in the accumulate phases come in 4s (16-byte loads of p and ds)
  static_assert(NK % RK == 0 && 32 % G == 0 && NT % 32 == 0 && NK % (4 * NW) == 0 && QT % (4 * NW) == 0, "attention tile shape");
};

// 16-byte shared-memory loads (the emulator reads through memcpy: no type punning on the host).
struct alignas(16) F4 {
  float x, y, z, w;
};
#ifdef KESTREL_EMU
KFN F4 ld4(const float* p) { F4 r; std::memcpy(&r, p, sizeof r); return r; }
#else
KFN F4 ld4(const float* p) { return *reinterpret_cast<const F4*>(p); }
#endif

// rows [0, ROWS) of a tile from `src` (rows of `dim` floats, `valid` of them present) into dst
// (rows of LD floats); missing rows and columns [dim, DMAX) are zero so that they add nothing.
template <class C, int ROWS> KFN void load_tile(float* dst, const float* src, i64 valid, i64 dim) {
  for (int e = threadIdx.x; e < ROWS * C::DMAX; e += C::NT) {
    int r = e / C::DMAX, c = e % C::DMAX;
    dst[r * C::LD + c] = r < valid && c < dim ? src[r * dim + c] : 0.0f;
  }
}

// acc[r] = a_row . b_{r} over n4 4-float chunks, for the RK rows b_r = b + r LD.
template <class C> KFN void dots(const float* a, const float* b, int n4, float (&acc)[C::RK]) {
  for (int r = 0; r < C::RK; r++) acc[r] = 0.0f;
  for (int c = 0; c < n4 * 4; c += 4) {
    F4 x = ld4(a + c);
    for (int r = 0; r < C::RK; r++) {
      F4 y = ld4(b + r * C::LD + c);
      acc[r] += x.x * y.x;
      acc[r] += x.y * y.y;
      acc[r] += x.z * y.z;
      acc[r] += x.w * y.w;
    }
  }
}

// Component u of f (u a compile-time constant once loops are unrolled).
KFN float part(const F4& f, int u) { return u == 0 ? f.x : u == 1 ? f.y : u == 2 ? f.z : f.w; }

KFN int chunks4(i64 dim) { return int((dim + 3) / 4); }

}  // namespace attn
}  // namespace kst
