// Paged KV cache kernels (vLLM's PagedAttention, Kwon et al. 2023) for continuous batching:
// a pool of slots [S, Hkv, hd] (slot = block * block_size + offset) and per sequence a table of its
// blocks in order. paged_write scatters new tokens' keys/values into their slots; paged_attention
// runs every query token of a ragged batch (decode tokens and prefill chunks of different
// sequences) against the keys of its own sequence up to its own position:
//   out[n, h] = sum_j softmax_j(softcap(scale q[n, h].k_j)) v_j,  j in [lo, pos[n]]
// One task per (query, kv head): each key row is read once for all the query heads of its group
// (GQA). The reference is src/backend/ref/paged.ts; src/backend/cpu/backend.ts packs the arguments.
#include <algorithm>
#include <cmath>
#include <string>

#include "kernel_api.h"
#include "simd.h"

namespace kestrel {
namespace {


void need_contiguous(const char* kernel, const View& v, int dtype, int ndim, const char* name) {
  if (v.dtype != dtype || v.ndim != ndim || !v.contiguous())
    fail(kernel, std::string(name) + " must be a contiguous " + dtype_name(dtype) + " tensor of " + std::to_string(ndim) +
                     " dims, got " + dtype_name(v.dtype) + " " + shape_str(v));
}

struct Paged {
  int64_t N = 0, H = 0, Hkv = 0, hd = 0, S = 0, num_seqs = 0, max_blocks = 0, bs = 0, rep = 1, window = 0;
  float scale = 1, softcap = 0;
  const float *q = nullptr, *k = nullptr, *v = nullptr;
  const int32_t *table = nullptr, *seq = nullptr, *pos = nullptr;
  float* out = nullptr;
};

// 8 independent partial sums so the loop vectorizes without reassociating a single sum.
__attribute__((target_clones("arch=haswell", "default"))) float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; l++) acc[l] += a[i + l] * b[i + l];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; i++) s += a[i] * b[i];
  return s;
}

__attribute__((target_clones("arch=haswell", "default"))) void axpy(float* y, float a, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

thread_local ScratchBuffer score_buffer{"paged_attention scores"};

// Every index a query will follow, checked before the pool threads run (they must not throw).
void check_indices(const Paged& p) {
  for (int64_t n = 0; n < p.N; n++) {
    const int64_t s = p.seq[n], last = p.pos[n];
    if (s < 0 || s >= p.num_seqs) fail("paged_attention", "query " + std::to_string(n) + ": sequence " + std::to_string(s) + " outside the table's " + std::to_string(p.num_seqs) + " rows");
    if (last < 0 || last >= p.max_blocks * p.bs)
      fail("paged_attention", "query " + std::to_string(n) + ": position " + std::to_string(last) + " outside the table's " + std::to_string(p.max_blocks * p.bs) + " tokens");
    for (int64_t b = 0; b <= last / p.bs; b++) {
      const int64_t block = p.table[s * p.max_blocks + b];
      if (block < 0 || (block + 1) * p.bs > p.S)
        fail("paged_attention", "sequence " + std::to_string(s) + ": block " + std::to_string(block) + " outside the pool's " + std::to_string(p.S / p.bs) + " blocks");
    }
  }
}

// Query n, kv head g: the rep query heads of the group, two passes over the visible keys
// (scores, then the weighted sum of values).
void attend_one(const Paged& p, int64_t n, int64_t g) {
  const int64_t s = p.seq[n], last = p.pos[n];
  const int64_t lo = p.window > 0 ? std::max<int64_t>(0, last - p.window + 1) : 0;
  const int64_t L = last - lo + 1;
  float* sc = score_buffer.get(size_t(p.rep * L));
  const int32_t* row = p.table + s * p.max_blocks;
  // visible key j's row of kv head g in the pool: its block's slot (the table's entry), then the head
  // (its value row is at the same offset of p.v)
  auto at = [&](int64_t j) -> int64_t {
    const int64_t t = lo + j, slot = int64_t(row[t / p.bs]) * p.bs + t % p.bs;
    return (slot * p.Hkv + g) * p.hd;
  };
  // keys prefetched kKeyPrefetchRows rows ahead, each value row into L2 as its key is scored (attention_tiles.inc's forward_one does the same)
  constexpr int64_t ahead = simd::kKeyPrefetchRows;
  for (int64_t j = 0; j < std::min(L, ahead); j++) simd::prefetch_floats<_MM_HINT_T0>(p.k + at(j), p.hd);
  for (int64_t j = 0; j < L; j++) {
    const float* kr = p.k + at(j);
    if (j + ahead < L) simd::prefetch_floats<_MM_HINT_T0>(p.k + at(j + ahead), p.hd);
    simd::prefetch_floats<_MM_HINT_T1>(p.v + at(j), p.hd);
    for (int64_t r = 0; r < p.rep; r++) {
      float z = p.scale * dot(p.q + (n * p.H + g * p.rep + r) * p.hd, kr, p.hd);
      if (p.softcap > 0) z = p.softcap * std::tanh(z / p.softcap);
      sc[r * L + j] = z;
    }
  }
  for (int64_t r = 0; r < p.rep; r++) {
    float* z = sc + r * L;
    const float m = *std::max_element(z, z + L);
    float sum = 0;
    for (int64_t j = 0; j < L; j++) sum += (z[j] = std::exp(z[j] - m));
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < L; j++) z[j] *= inv;
    std::fill_n(p.out + (n * p.H + g * p.rep + r) * p.hd, p.hd, 0.0f);
  }
  for (int64_t j = 0; j < L; j++) {
    const float* vr = p.v + at(j);
    for (int64_t r = 0; r < p.rep; r++) axpy(p.out + (n * p.H + g * p.rep + r) * p.hd, sc[r * L + j], vr, p.hd);
  }
}

}  // namespace

// paged_write(src [N, Hkv, hd], slots int64 [N], pool [S, Hkv, hd]): pool[slots[i]] = src[i]
KESTREL_KERNEL(paged_write) {
  View src = args.view(), slots = args.view(), pool = args.view();
  args.done();
  need_contiguous("paged_write", pool, F32, 3, "pool");
  need_contiguous("paged_write", src, F32, 3, "src");
  need_contiguous("paged_write", slots, I64, 1, "slots");
  const int64_t N = src.shape[0], row = pool.shape[1] * pool.shape[2], S = pool.shape[0];
  if (src.shape[1] != pool.shape[1] || src.shape[2] != pool.shape[2] || slots.shape[0] != N)
    fail("paged_write", "src " + shape_str(src) + " and slots " + shape_str(slots) + " do not fit the pool " + shape_str(pool));
  const int64_t* ids = slots.ptr<int64_t>();
  for (int64_t i = 0; i < N; i++)
    if (ids[i] < 0 || ids[i] >= S) fail("paged_write", "slot " + std::to_string(ids[i]) + " of row " + std::to_string(i) + " outside the pool's " + std::to_string(S) + " slots");
  const float* x = src.ptr<float>();
  float* dst = pool.ptr<float>();
  for (int64_t i = 0; i < N; i++) std::copy_n(x + i * row, row, dst + ids[i] * row);
}

// paged_attention(q [N, H, hd], k_pool, v_pool [S, Hkv, hd], table int32 [seqs, max_blocks],
//                 seq int32 [N], pos int32 [N], scale, window, softcap, block_size, out [N, H, hd])
KESTREL_KERNEL(paged_attention) {
  View q = args.view(), k = args.view(), v = args.view(), table = args.view(), seq = args.view(), pos = args.view();
  Paged p;
  p.scale = float(args.num());
  p.window = args.i64();
  p.softcap = float(args.num());
  p.bs = args.i64();
  View out = args.view();
  args.done();
  const char* K = "paged_attention";
  need_contiguous(K, q, F32, 3, "q");
  need_contiguous(K, k, F32, 3, "k_pool");
  need_contiguous(K, v, F32, 3, "v_pool");
  need_contiguous(K, out, F32, 3, "out");
  need_contiguous(K, table, I32, 2, "block table");
  need_contiguous(K, seq, I32, 1, "seq");
  need_contiguous(K, pos, I32, 1, "pos");
  p.N = q.shape[0], p.H = q.shape[1], p.hd = q.shape[2];
  p.S = k.shape[0], p.Hkv = k.shape[1];
  p.num_seqs = table.shape[0], p.max_blocks = table.shape[1];
  if (k.shape[2] != p.hd || v.shape[0] != p.S || v.shape[1] != p.Hkv || v.shape[2] != p.hd)
    fail(K, "pools k " + shape_str(k) + " and v " + shape_str(v) + " must both be [S, Hkv, " + std::to_string(p.hd) + "]");
  if (p.Hkv <= 0 || p.H % p.Hkv != 0) fail(K, std::to_string(p.H) + " query heads are not a multiple of " + std::to_string(p.Hkv) + " kv heads");
  if (out.shape[0] != p.N || out.shape[1] != p.H || out.shape[2] != p.hd) fail(K, "out " + shape_str(out) + " must be q's shape " + shape_str(q));
  if (seq.shape[0] != p.N || pos.shape[0] != p.N) fail(K, "seq " + shape_str(seq) + " and pos " + shape_str(pos) + " must have one entry per query");
  if (p.bs <= 0 || p.S % p.bs != 0) fail(K, "block size " + std::to_string(p.bs) + " does not divide the pool's " + std::to_string(p.S) + " slots");
  if (p.window < 0) fail(K, "window must be >= 0, got " + std::to_string(p.window));
  p.rep = p.H / p.Hkv;
  p.q = q.ptr<float>(), p.k = k.ptr<float>(), p.v = v.ptr<float>(), p.out = out.ptr<float>();
  p.table = table.ptr<int32_t>(), p.seq = seq.ptr<int32_t>(), p.pos = pos.ptr<int32_t>();
  check_indices(p);
  parallel_for(p.N * p.Hkv, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; t++) attend_one(p, t / p.Hkv, t % p.Hkv);
  });
}

}  // namespace kestrel
