// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011), the
// counter-based generator of src/tensor/rng.ts: a block of 4 words for (key = seed, counter).
// Element i of a draw depends only on (seed, counter, i), so the native and reference backends
// agree bit for bit on uniforms, and a fused kernel can regenerate a dropout mask in backward.
#pragma once
#include <cstdint>

namespace kestrel {

struct PhiloxKey {
  uint32_t k0, k1;  // seed low and high 32 bits
};

// The 4 words of block `counter` (the 64-bit counter fills words 0 and 1; words 2 and 3 are 0).
inline void philox4x32_10(PhiloxKey key, uint64_t counter, uint32_t out[4]) {
  constexpr uint32_t M0 = 0xd2511f53u, M1 = 0xcd9e8d57u, W0 = 0x9e3779b9u, W1 = 0xbb67ae85u;
  uint32_t c0 = uint32_t(counter), c1 = uint32_t(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = key.k0, k1 = key.k1;
  for (int r = 0; r < 10; r++) {
    uint64_t p0 = uint64_t(M0) * c0, p1 = uint64_t(M1) * c2;
    uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0, n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c1 = uint32_t(p1);
    c3 = uint32_t(p0);
    c0 = n0;
    c2 = n2;
    k0 += W0;
    k1 += W1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

constexpr double kInv2Pow24 = 1.0 / 16777216.0;

// A uniform in [0, 1) from one word: its top 24 bits times 2^-24 (exact in float32).
inline double philox_uniform(uint32_t w) { return double(w >> 8) * kInv2Pow24; }

}  // namespace kestrel
