// A self-test of the tensor-core wrappers of common.cuh, for test/backend/kernels_mma.test.ts only
// (one warp): D = C + A B for A [16,16], B [16,16] (two n-tiles of 8) in bf16 or f16, computed with
// fragments gathered by hand from the PTX layouts (d[0]), with A and B through ldmatrix from
// cp.async-staged shared copies (B row-major, .trans; d[1]), and with B given transposed (plain
// ldmatrix; d[2]); packed[i] = pack2(c[2i], c[2i+1]). Checks the fragment bookkeeping on its own.
#include "common.cuh"

using namespace kst;

struct alignas(16) MmaCheckSmem {
  u16 a[16 * 24], b[16 * 24], bt[16 * 24];  // rows padded to 24 values (48 bytes: 16-byte aligned)
};

template <class T> KFN void mma_check_impl(const u16* a, const u16* b, const float* c, float* d, u32* packed) {
  __shared__ MmaCheckSmem sm;
  const int l = threadIdx.x & 31, g = l >> 2, t = l & 3;
  cp_async16(sm.a + (l >> 1) * 24 + (l & 1) * 8, a + (l >> 1) * 16 + (l & 1) * 8);
  cp_async16(sm.b + (l >> 1) * 24 + (l & 1) * 8, b + (l >> 1) * 16 + (l & 1) * 8);
  for (int e = l; e < 256; e += 32) sm.bt[(e % 16) * 24 + e / 16] = b[e];  // bt[n][k] = b[k][n]
  cp_async_wait_all();
  sync();
  auto pair = [](const u16* m, int row, int col) { return u32(m[row * 16 + col]) | (u32(m[row * 16 + col + 1]) << 16); };
  auto pair_k = [](const u16* m, int k, int col) { return u32(m[k * 16 + col]) | (u32(m[(k + 1) * 16 + col]) << 16); };
  u32 fa[3][4], fb[3][4];
  // by hand: a0 (g, 2t), a1 (g+8, 2t), a2 (g, 2t+8), a3 (g+8, 2t+8); b0 (k 2t, col g), b1 (k 2t+8, col g)
  fa[0][0] = pair(a, g, 2 * t), fa[0][1] = pair(a, g + 8, 2 * t), fa[0][2] = pair(a, g, 2 * t + 8), fa[0][3] = pair(a, g + 8, 2 * t + 8);
  for (int nt = 0; nt < 2; nt++) fb[0][2 * nt] = pair_k(b, 2 * t, 8 * nt + g), fb[0][2 * nt + 1] = pair_k(b, 2 * t + 8, 8 * nt + g);
  ldmatrix_x4(fa[1], sm.a + (l & 15) * 24 + (l >> 4) * 8);
  ldmatrix_x4_trans(fb[1], sm.b + (l & 15) * 24 + (l >> 4) * 8);
  for (int i = 0; i < 4; i++) fa[2][i] = fa[1][i];
  ldmatrix_x4(fb[2], sm.bt + ((l & 7) + (l >> 4) * 8) * 24 + ((l >> 3) & 1) * 8);
  for (int way = 0; way < 3; way++)
    for (int nt = 0; nt < 2; nt++) {
      float acc[4];
      for (int e = 0; e < 4; e++) acc[e] = c[(g + 8 * (e >> 1)) * 16 + 8 * nt + 2 * t + (e & 1)];
      mma_16816<T>(acc, fa[way], fb[way] + 2 * nt);
      for (int e = 0; e < 4; e++) d[way * 256 + (g + 8 * (e >> 1)) * 16 + 8 * nt + 2 * t + (e & 1)] = acc[e];
    }
  for (int i = l; i < 128; i += 32) packed[i] = pack2<T>(c[2 * i], c[2 * i + 1]);
}

KERNEL(mma_check_bf16, (const u16* a, const u16* b, const float* c, float* d, u32* packed)) { mma_check_impl<bf16>(a, b, c, d, packed); }
KERNEL(mma_check_f16, (const u16* a, const u16* b, const float* c, float* d, u32* packed)) { mma_check_impl<f16>(a, b, c, d, packed); }
