// The paged KV cache of continuous batching on the GPU (vLLM's PagedAttention, Kwon et al. 2023),
// as native/paged_attention.cc computes it on the CPU: a pool of slots [S, Hkv, hd] (slot = block *
// block_size + offset), per sequence a row of the block table listing its blocks in token order.
//   paged_write:     pool[slots[i]] = src[i]
//   paged_attention: out[n, h] = sum_j softmax_j(softcap(scale q[n, h].k_j)) v_j over the keys j of
//                    query n's sequence with lo <= j <= pos[n] (lo from the sliding window)
// A block per query head: each of its warps takes every PA_WARPS-th chunk of 32 keys, a key per
// lane for the scores (the lane reads its key's row), then a dim per lane for the values (the
// warp reads each value row whole, coalesced), with an online softmax (running max m, sum l);
// the warps' partial results are merged through shared memory at the end. Heads of one kv group
// read the same rows at about the same time, so GQA's sharing comes from the caches.
// Key rows are read in 16-byte loads where `vec` (the host's check: hd a multiple of 4 and the key
// pool 16-byte aligned), else a float at a time.
// Indices are checked on the device (no host round trip per step): a bad one is recorded in the
// error record (common.cuh's record_error; paged_attention's three codes are op, op + 1, op + 2:
// sequence, position, block), reported at the next host read with the CPU's wording; its query's
// output is left zero, and a bad slot's row is not written.
#include "common.cuh"

using namespace kst;

#define PA_WARPS 4
#define PA_DMAX 256
#define PA_DL (PA_DMAX / 32)  // dims per lane

KFN float paged_neg_inf() { return bits_to_float(0xff800000u); }

// src [N, row] float32 rows into the pool's slots (rows of `row` = Hkv hd floats).
KERNEL(paged_write_f32, (const float* src, const i64* slots, float* pool, i64 N, i64 row, i64 S, i64* err, i64 op, i64 id)) {
  KST_FOR(e, N * row) {
    const i64 i = e / row, c = e - i * row, slot = slots[i];
    if (slot < 0 || slot >= S) {
      if (c == 0) record_error(err, op, id, i, slot, S);
      continue;
    }
    pool[slot * row + c] = src[e];
  }
}

KERNEL(paged_attention_f32, (const float* q, const float* kp, const float* vp, const i32* table, const i32* seq, const i32* pos,
                             i64 H, i64 Hkv, i64 hd, i64 S, i64 num_seqs, i64 max_blocks, i64 bs, float scale, i64 window,
                             float softcap, i32 vec, float* out, i64* err, i64 op, i64 id)) {
  __shared__ float qs[PA_DMAX];
  __shared__ float part_o[PA_WARPS][PA_DMAX];
  __shared__ float part_m[PA_WARPS], part_l[PA_WARPS];
  __shared__ int bad;
  const i64 n = i64(blockIdx.x) / H, h = i64(blockIdx.x) - n * H, g = h / (H / Hkv);
  const int t = threadIdx.x, lane = t & 31, w = t >> 5;
  float* o = out + (n * H + h) * hd;
  const i64 s = seq[n], last = pos[n];
  if (t == 0) bad = 0;
  sync();
  // the checks native/paged_attention.cc makes before it attends; uniform over the block
  if (s < 0 || s >= num_seqs) {
    if (t == 0) record_error(err, op, id, n, s, num_seqs);
    bad = 1;
  } else if (last < 0 || last >= max_blocks * bs) {
    if (t == 0) record_error(err, op + 1, id, n, last, max_blocks * bs);
    bad = 1;
  } else {
    for (i64 b = t; b <= last / bs; b += blockDim.x) {
      const i64 block = table[s * max_blocks + b];
      if (block < 0 || (block + 1) * bs > S) {
        record_error(err, op + 2, id, s, block, S / bs);
        bad = 1;
      }
    }
  }
  for (i64 d = t; d < hd; d += blockDim.x) qs[d] = q[(n * H + h) * hd + d];
  sync();
  if (bad) {
    for (i64 d = t; d < hd; d += blockDim.x) o[d] = 0.0f;
    return;
  }

  const i64 lo = window > 0 && last - window + 1 > 0 ? last - window + 1 : 0;
  const i32* row = table + s * max_blocks;
  float m = paged_neg_inf(), l = 0.0f, acc[PA_DL];
  KST_UNROLL for (int i = 0; i < PA_DL; i++) acc[i] = 0.0f;
  for (i64 j0 = lo + i64(w) * 32; j0 <= last; j0 += 32 * PA_WARPS) {
    // scores: lane -> key j0 + lane
    const i64 j = j0 + lane;
    const bool visible = j <= last;
    const i64 slot = visible ? i64(row[j / bs]) * bs + j % bs : 0;
    float z = paged_neg_inf();
    if (visible) {
      const float* kr = kp + (slot * Hkv + g) * hd;
      float dot = 0.0f;
      if (vec) {
        for (i64 d = 0; d < hd; d += 4) {
          const Vec16 k4 = load16(kr + d);
          dot += qs[d] * bits_to_float(k4.w[0]) + qs[d + 1] * bits_to_float(k4.w[1]) + qs[d + 2] * bits_to_float(k4.w[2]) +
                 qs[d + 3] * bits_to_float(k4.w[3]);
        }
      } else {
        for (i64 d = 0; d < hd; d++) dot += qs[d] * kr[d];
      }
      z = scale * dot;
      if (softcap > 0.0f) z = softcap * tanhf(z / softcap);
    }
    const float mn = fmaxf(m, warp_max(z));  // the chunk's first key is visible: mn is finite
    const float p = visible ? expf(z - mn) : 0.0f, alpha = expf(m - mn);
    l = l * alpha + warp_sum(p);
    m = mn;
    KST_UNROLL for (int i = 0; i < PA_DL; i++) acc[i] *= alpha;
    // values: lane -> dims lane + 32 i, key by key (its weight and slot from the lane that scored it)
    const i64 keys = last - j0 + 1 < 32 ? last - j0 + 1 : 32;
    for (int r = 0; r < keys; r++) {
      const float pr = shfl(p, r);
      const i64 sr = shfl(slot, r);
      const float* vr = vp + (sr * Hkv + g) * hd;
      KST_UNROLL for (int i = 0; i < PA_DL; i++) {
        const i64 d = lane + 32 * i;
        if (d < hd) acc[i] += pr * vr[d];
      }
    }
  }
  // merge the warps' (m, l, acc): out = sum_w e^(m_w - M) acc_w / sum_w e^(m_w - M) l_w
  KST_UNROLL for (int i = 0; i < PA_DL; i++) {
    const i64 d = lane + 32 * i;
    if (d < hd) part_o[w][d] = acc[i];
  }
  if (lane == 0) part_m[w] = m, part_l[w] = l;
  sync();
  float M = paged_neg_inf();
  for (int x = 0; x < PA_WARPS; x++) M = fmaxf(M, part_m[x]);
  float denom = 0.0f, f[PA_WARPS];
  for (int x = 0; x < PA_WARPS; x++) {
    f[x] = part_l[x] > 0.0f ? expf(part_m[x] - M) : 0.0f;  // a warp with no keys has l = 0, m = -inf
    denom += f[x] * part_l[x];
  }
  for (i64 d = t; d < hd; d += blockDim.x) {
    float num = 0.0f;
    for (int x = 0; x < PA_WARPS; x++) num += f[x] * part_o[x][d];
    o[d] = num / denom;
  }
}
