// The AMX-BF16 path of the half-precision GEMM (gemm_half.h). Eight tile registers of 16 rows x
// 64 bytes: four hold a 32x32 float32 block of C, two the A rows (16 rows x 32 bf16 of k each)
// and two the B columns (16 k-pairs x 16 columns, each a bf16 pair: the layout pack_pairs writes
// for a 32-column panel, read with a 128-byte row stride). Per 32 k the micro-kernel loads those
// four operand tiles and issues four tdpbf16ps (16x16x32 multiply-adds each, float32 sums).
// Intel SDM vol. 1 ch. 18 and the Intel AMX sample (oneDNN's brgemm does the same at scale).
// Linux (5.16+) keeps the 8 KB tile data out of a process's signal frames unless the process
// asks for it (arch_prctl ARCH_REQ_XCOMP_PERM, Documentation/arch/x86/xstate.rst); the request is
// made once, and if it is refused the path is unavailable and the driver falls back.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "gemm_half.h"
#include "kernel_api.h"
#include "transpose16.h"

// GCC 12 warns that the AVX-512 masked-load intrinsics read an uninitialized __Y (their
// _mm*_undefined_*() pass-through); a known false positive, GCC PR 105593 (as simd.h says).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#define KESTREL_AMX __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,amx-tile,amx-bf16")))

// Own wrappers: GCC 12's _tile_loadconfig declares only 8 of the config's 64 bytes as read and
// its _tile_loadd has no memory clobber, so the compiler could sink the stores that fill a
// buffer below the tile load that reads it.
#define TILE_LOAD(t, base, stride) \
  __asm__ volatile("tileloadd (%0,%1,1), %%tmm" #t ::"r"(base), "r"(int64_t(stride)) : "memory")
#define TILE_STORE(t, base, stride) \
  __asm__ volatile("tilestored %%tmm" #t ", (%0,%1,1)" ::"r"(base), "r"(int64_t(stride)) : "memory")
#define TILE_ZERO(t) __asm__ volatile("tilezero %%tmm" #t ::)
#define TILE_DP(c, a, b) __asm__ volatile("tdpbf16ps %%tmm" #b ", %%tmm" #a ", %%tmm" #c ::)

namespace kestrel {
namespace gemm_detail {
namespace {

constexpr int kMR = 32, kNR = 32, kTileK = 32;

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

KESTREL_AMX void enter() {
  static const TileConfig cfg = [] {
    TileConfig c;
    for (int t = 0; t < 8; t++) c.rows[t] = 16, c.colsb[t] = 64;
    return c;
  }();
  __asm__ volatile("ldtilecfg %0" ::"m"(cfg) : "memory");
}

KESTREL_AMX void leave() { __asm__ volatile("tilerelease" ::: "memory"); }

// One A panel from a k-major source (A transposed, as in a weight gradient dW = dYᵀ X, whose k
// is the token dimension): rows r < n at src[k*ks + r]. Per 16 rows and 32 k, k rows 2p and 2p+1
// are interleaved into 32-bit pairs (word r = the pair of row r, as pack_pairs does), and the 16x16
// block of pairs is transposed in registers, giving each row its 32 consecutive k: 64 bytes stored
// at once instead of 512 scalar stores a column apart. Reads stop at row n and k = kc (masked loads
// give the zeros); rows from n to the panel's end were zeroed by the caller.
KESTREL_AMX void pack_a_k_major(const uint16_t* src, int64_t ks, int n, int64_t kc, int64_t kcp, uint16_t* dst) {
  for (int r0 = 0; r0 < n; r0 += 16) {
    int rows = std::min(16, n - r0);
    __mmask16 lm = __mmask16((1u << rows) - 1u);
    for (int64_t k0 = 0; k0 < kc; k0 += 32) {
      __m512 w[16];
#pragma GCC unroll 16
      for (int p = 0; p < 16; p++) {
        int64_t k = k0 + 2 * p;
        __m256i lo = k < kc ? _mm256_maskz_loadu_epi16(lm, src + k * ks + r0) : _mm256_setzero_si256();
        __m256i hi = k + 1 < kc ? _mm256_maskz_loadu_epi16(lm, src + (k + 1) * ks + r0) : _mm256_setzero_si256();
        w[p] = _mm512_castsi512_ps(_mm512_or_si512(_mm512_cvtepu16_epi32(lo), _mm512_slli_epi32(_mm512_cvtepu16_epi32(hi), 16)));
      }
      transpose16(w);  // w[r] now holds the 16 pairs (32 k) of row r0 + r
      for (int r = 0; r < rows; r++) _mm512_storeu_ps(dst + (r0 + r) * kcp + k0, w[r]);
    }
  }
}

// A panels for the tiles: mr rows of kcp contiguous bf16 each (element (r, k) at r*kcp + k),
// zero-padded, so a tile of 16 rows x 32 k is a 64-byte-wide window at stride 2*kcp bytes.
void pack_a(const uint16_t* src, int64_t rs, int64_t ks, int64_t rows, int64_t kc, int64_t kcp, int mr, bool,
            void* dstv) {
  uint16_t* dst = static_cast<uint16_t*>(dstv);
  for (int64_t p = 0; p < rows; p += mr, dst += mr * kcp) {
    int n = int(std::min<int64_t>(mr, rows - p));
    const uint16_t* s = src + p * rs;
    if (n < mr || kc < kcp) std::memset(dst, 0, sizeof(uint16_t) * size_t(mr * kcp));
    if (ks == 1) {
      for (int r = 0; r < n; r++) std::memcpy(dst + r * kcp, s + r * rs, sizeof(uint16_t) * size_t(kc));
    } else if (rs == 1) {
      pack_a_k_major(s, ks, n, kc, kcp, dst);
    } else {
      for (int64_t k = 0; k < kc; k++)
        for (int r = 0; r < n; r++) dst[r * kcp + k] = s[r * rs + k * ks];
    }
  }
}

// The four C tiles (rows 0-15 / 16-31 x cols 0-15 / 16-31) at c with row stride ldc floats.
KESTREL_AMX inline void load_c(const float* c, int64_t ldc) {
  TILE_LOAD(0, c, ldc * 4);
  TILE_LOAD(1, c + 16, ldc * 4);
  TILE_LOAD(2, c + 16 * ldc, ldc * 4);
  TILE_LOAD(3, c + 16 * ldc + 16, ldc * 4);
}
KESTREL_AMX inline void store_c(float* c, int64_t ldc) {
  TILE_STORE(0, c, ldc * 4);
  TILE_STORE(1, c + 16, ldc * 4);
  TILE_STORE(2, c + 16 * ldc, ldc * 4);
  TILE_STORE(3, c + 16 * ldc + 16, ldc * 4);
}

KESTREL_AMX void kernel(int64_t kcp, const void* av, const void* bv, float* c, int64_t ldc, bool add, int mr, int nr) {
  const uint16_t* a = static_cast<const uint16_t*>(av);
  const uint16_t* b = static_cast<const uint16_t*>(bv);
  // A full tile reads and writes C in place; an edge tile goes through a 32x32 buffer so that
  // nothing outside the mr x nr corner of C is touched.
  bool full = mr == kMR && nr == kNR;
  alignas(64) float edge[kMR * kNR];
  if (full) {
    if (add) load_c(c, ldc);
  } else if (add) {
    std::memset(edge, 0, sizeof edge);
    for (int i = 0; i < mr; i++) std::memcpy(edge + i * kNR, c + i * ldc, sizeof(float) * size_t(nr));
    load_c(edge, kNR);
  }
  if (!add) {
    TILE_ZERO(0);
    TILE_ZERO(1);
    TILE_ZERO(2);
    TILE_ZERO(3);
  }
  const int64_t astride = kcp * 2;  // bytes between rows of the A panel
  for (int64_t k = 0; k < kcp; k += kTileK) {
    TILE_LOAD(4, a + k, astride);
    TILE_LOAD(5, a + 16 * kcp + k, astride);
    // k-pairs k/2 .. k/2+15 of the B panel: 64 bf16 (128 bytes) per pair row
    TILE_LOAD(6, b + k * kNR, 2 * kNR * 2);
    TILE_LOAD(7, b + k * kNR + 32, 2 * kNR * 2);
    TILE_DP(0, 4, 6);
    TILE_DP(1, 4, 7);
    TILE_DP(2, 5, 6);
    TILE_DP(3, 5, 7);
  }
  if (full) return store_c(c, ldc);
  store_c(edge, kNR);
  for (int i = 0; i < mr; i++) std::memcpy(c + i * ldc, edge + i * kNR, sizeof(float) * size_t(nr));
}

bool tile_permission() {
  constexpr long kArchReqXcompPerm = 0x1023, kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
}

}  // namespace

const HalfPath* amx_path() {
  // kc = 512: the 32 x kc A micro-panel (32 KB) stays in L1 while 32 x kc B micro-panels stream
  // from the kc x nc B block (512 KB, in L2).
  static const HalfPath path = {"amx", kMR, kNR, kTileK, 1024, 512, 512, 2, pack_a, pack_pairs, kernel, enter, leave, pack_pairs_float};
  static const bool usable = cpu_features().amx_bf16 && tile_permission();
  return usable ? &path : nullptr;
}

}  // namespace gemm_detail
}  // namespace kestrel
