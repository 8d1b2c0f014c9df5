// Philox4x32-10 (Salmon et al. 2011), bit-identical to src/tensor/rng.ts, for the attention
// dropout mask: element (b, h, i, j) is kept iff uniform(idx) >= p, idx = ((b H + h) Tq + i) Tk + j,
// uniform(idx) = (word idx % 4 of philox(seed, counter + idx / 4)) >> 8, times 2^-24.
// Backward regenerates the same mask from (seed, counter), so nothing [Tq, Tk] is stored.
#pragma once
#include <cstdint>

namespace kestrel {
namespace attn_philox {

inline void philox4x32_10(uint32_t k0, uint32_t k1, uint64_t counter, uint32_t out[4]) {
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = 0, c3 = 0;
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = uint64_t(0xd2511f53u) * c0, p1 = uint64_t(0xcd9e8d57u) * c2;
    uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0, n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c1 = uint32_t(p1);
    c3 = uint32_t(p0);
    c0 = n0;
    c2 = n2;
    k0 += 0x9e3779b9u;
    k1 += 0xbb67ae85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// Keep flags of the uniform draws idx0 .. idx0 + n - 1 (keep[t] = 1 iff uniform >= p).
struct DropoutStream {
  uint32_t seed_lo, seed_hi;
  uint64_t counter;
  uint32_t threshold;  // keep iff (word >> 8) >= threshold, threshold = ceil(p 2^24)

  DropoutStream(uint32_t lo, uint32_t hi, uint64_t ctr, double p) : seed_lo(lo), seed_hi(hi), counter(ctr) {
    // (w >> 8) 2^-24 >= p  <=>  (w >> 8) >= p 2^24  <=>  (w >> 8) >= ceil(p 2^24) for integer (w >> 8)
    double t = p * 16777216.0;
    uint64_t c = uint64_t(t);
    if (double(c) < t) c++;
    threshold = uint32_t(c);
  }

  void keep(uint64_t idx0, int64_t n, uint8_t* keep) const {
    uint32_t w[4];
    uint64_t block = ~uint64_t(0);
    for (int64_t t = 0; t < n; t++) {
      uint64_t idx = idx0 + uint64_t(t), b = idx >> 2;
      if (b != block) {
        philox4x32_10(seed_lo, seed_hi, counter + b, w);
        block = b;
      }
      keep[t] = (w[idx & 3] >> 8) >= threshold;
    }
  }
};

}  // namespace attn_philox
}  // namespace kestrel
