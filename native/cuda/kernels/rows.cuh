// What the row kernels (softmax, norms, cross-entropy) share: a contiguous [rows, D] matrix
// (float32, or half storage loaded into float32) is handed out a row per warp (short rows,
// D <= 1024: blockDim/32 rows per block) or a row per block (long rows), striding over the rows
// so that any grid covers them. Row<WARP> gives a thread its first row, the step, its lane in
// the row's group and the group's reductions; MaxSum is the running (max, sum of exp(x - max))
// of an online softmax (Milakov & Gimelshein 2018).
#pragma once
#include "common.cuh"

namespace kst {

KFN float neg_inf() { return bits_to_float(0xff800000u); }

template <bool WARP> struct Row {
  KFN static int lane() { return WARP ? int(threadIdx.x & 31) : int(threadIdx.x); }
  KFN static int width() { return WARP ? 32 : int(blockDim.x); }
  KFN static i64 first() { return WARP ? i64(blockIdx.x) * (blockDim.x >> 5) + (threadIdx.x >> 5) : i64(blockIdx.x); }
  KFN static i64 step() { return WARP ? i64(gridDim.x) * (blockDim.x >> 5) : i64(gridDim.x); }
  // The group's sum / max, in every thread of the group; `scratch` is 32 floats of shared memory
  // (used by the block form only). A block's threads all call these in the same rows.
  KFN static float sum(float v, float* scratch) { return WARP ? warp_sum(v) : block_sum(v, scratch); }
  KFN static float max(float v, float* scratch) { return WARP ? warp_max(v) : block_max(v, scratch, neg_inf()); }
};

struct MaxSum {
  float m, s;
};

KFN MaxSum max_sum_empty() {
  MaxSum r;
  r.m = neg_inf();
  r.s = 0.0f;
  return r;
}

// Adds x: -inf adds nothing (and never meets another -inf in a subtraction); NaN makes s NaN, so
// the row comes out NaN, as the reference's does.
KFN MaxSum max_sum_add(MaxSum a, float x) {
  if (x == neg_inf()) return a;
  if (x > a.m) {
    a.s = a.s * expf(a.m - x) + 1.0f;
    a.m = x;
  } else {
    a.s += expf(x - a.m);
  }
  return a;
}

// Merges two partial states; commutative, so every lane of a butterfly ends with the same value.
KFN MaxSum max_sum_merge(MaxSum a, MaxSum b) {
  MaxSum r;
  r.m = a.m > b.m ? a.m : b.m;
  // an empty side has s 0 (or NaN after a NaN input): s * 0 keeps the NaN and avoids -inf - -inf
  float fa = a.m == neg_inf() ? a.s * 0.0f : a.s * expf(a.m - r.m);
  float fb = b.m == neg_inf() ? b.s * 0.0f : b.s * expf(b.m - r.m);
  r.s = fa + fb;
  return r;
}

KFN MaxSum warp_max_sum(MaxSum v) {
  for (int k = 16; k > 0; k >>= 1) {
    MaxSum o;
    o.m = shfl_xor(v.m, k);
    o.s = shfl_xor(v.s, k);
    v = max_sum_merge(v, o);
  }
  return v;
}

// The group's merged state in every thread; sm/ss are 32 floats of shared memory each.
template <bool WARP> KFN MaxSum row_max_sum(MaxSum v, float* sm, float* ss) {
  v = warp_max_sum(v);
  if (WARP) return v;
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  sync();  // the scratch may still be read by a previous call
  if (lane == 0) {
    sm[w] = v.m;
    ss[w] = v.s;
  }
  sync();
  v = max_sum_empty();
  if (lane < nw) {
    v.m = sm[lane];
    v.s = ss[lane];
  }
  return warp_max_sum(v);
}

}  // namespace kst
