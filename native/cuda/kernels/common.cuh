// What every kernel file shares: fixed-width types, the KERNEL declaration, strided layouts,
// 16-bit float conversions (the CPU backend's rounding, bit for bit), warp/block reductions,
// atomics for every dtype, and Philox (src/tensor/rng.ts). Kernels use CUDA's intrinsics only
// through the wrappers here, so that the same file compiles three ways: NVRTC at run time (the
// GPU), clang to PTX in CI (clang_prelude.h) and host C++ for the emulator (emu/prelude.h).
#pragma once

typedef long long i64;
typedef unsigned long long u64;
typedef int i32;
typedef unsigned int u32;
typedef unsigned short u16;
typedef signed char i8;
typedef unsigned char u8;

#ifndef KESTREL_EMU
#define KERNEL(name, params) extern "C" __global__ void name params
// A kernel launched with at most `threads` threads per block that needs `min_blocks` resident per
// SM: the compiler caps its registers to fit (__launch_bounds__; the emulator ignores it).
#define KERNEL_BOUNDS(name, threads, min_blocks, params) \
  extern "C" __global__ void __launch_bounds__(threads, min_blocks) name params
// Unroll the next loop fully (register arrays indexed by its variable stay in registers).
#define KST_UNROLL _Pragma("unroll")
#endif

#define KFN __device__ __forceinline__

namespace kst {

// ---------------------------------------------------------------- intrinsics

#ifdef KESTREL_EMU
KFN void sync() { ::kestrel::cuda::emu::sync_block(); }
template <class T> KFN T shfl_xor(T v, int mask) { return ::kestrel::cuda::emu::shuffle(v, ::kestrel::cuda::emu::lane_id() ^ mask); }
template <class T> KFN T shfl(T v, int lane) { return ::kestrel::cuda::emu::shuffle(v, lane); }
KFN u32 atomic_cas(u32* p, u32 expect, u32 value) { u32 old = *p; if (old == expect) *p = value; return old; }
KFN u64 atomic_cas(u64* p, u64 expect, u64 value) { u64 old = *p; if (old == expect) *p = value; return old; }
KFN float atomic_add(float* p, float v) { float old = *p; *p = old + v; return old; }
KFN double atomic_add(double* p, double v) { double old = *p; *p = old + v; return old; }
KFN u32 atomic_add(u32* p, u32 v) { u32 old = *p; *p = old + v; return old; }
KFN u64 atomic_add(u64* p, u64 v) { u64 old = *p; *p = old + v; return old; }
KFN float bits_to_float(u32 u) { float f; std::memcpy(&f, &u, 4); return f; }
KFN u32 float_to_bits(float f) { u32 u; std::memcpy(&u, &f, 4); return u; }
KFN double bits_to_double(u64 u) { double f; std::memcpy(&f, &u, 8); return f; }
KFN u64 double_to_bits(double f) { u64 u; std::memcpy(&u, &f, 8); return u; }
KFN u32 mulhi(u32 a, u32 b) { return u32((u64(a) * b) >> 32); }
KFN double mul_rn(double a, double b) { return a * b; }
#else
KFN void sync() { __syncthreads(); }
template <class T> KFN T shfl_xor(T v, int mask) { return __shfl_xor_sync(0xffffffffu, v, mask); }
template <class T> KFN T shfl(T v, int lane) { return __shfl_sync(0xffffffffu, v, lane); }
KFN u32 atomic_cas(u32* p, u32 expect, u32 value) { return atomicCAS(p, expect, value); }
KFN u64 atomic_cas(u64* p, u64 expect, u64 value) { return atomicCAS(p, expect, value); }
KFN float atomic_add(float* p, float v) { return atomicAdd(p, v); }
KFN double atomic_add(double* p, double v) { return atomicAdd(p, v); }
KFN u32 atomic_add(u32* p, u32 v) { return atomicAdd(p, v); }
KFN u64 atomic_add(u64* p, u64 v) { return atomicAdd(p, v); }
KFN float bits_to_float(u32 u) { return __uint_as_float(u); }
KFN u32 float_to_bits(float f) { return __float_as_uint(f); }
KFN double bits_to_double(u64 u) { return __longlong_as_double((long long)u); }
KFN u64 double_to_bits(double f) { return (u64)__double_as_longlong(f); }
KFN u32 mulhi(u32 a, u32 b) { return __umulhi(a, b); }
// a product the compiler may not fuse into a following add (results equal to the CPU's)
KFN double mul_rn(double a, double b) { return __dmul_rn(a, b); }
#endif

// ---------------------------------------------------------------- 16-byte loads

// Four 32-bit words read from global memory in one 128-bit load (p 16-byte aligned), through the
// read-only path: for streaming weights that no kernel writes while it runs.
struct alignas(16) Vec16 {
  u32 w[4];
};
#ifdef KESTREL_EMU
KFN Vec16 load16(const void* p) {
  Vec16 v;
  std::memcpy(&v, p, 16);
  return v;
}
#else
KFN Vec16 load16(const void* p) {
  Vec16 v;
  asm volatile("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(v.w[0]), "=r"(v.w[1]), "=r"(v.w[2]), "=r"(v.w[3]) : "l"(p));
  return v;
}
#endif

// ---------------------------------------------------------------- 16-bit floats (native/runtime.cc's rounding)

KFN float bf16_to_f32(u16 h) { return bits_to_float(u32(h) << 16); }
KFN u16 f32_to_bf16(float f) {
  u32 u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return u16((u >> 16) | 0x40u);  // quiet NaN, sign kept
  u += 0x7fffu + ((u >> 16) & 1u);                                      // round to nearest even
  return u16(u >> 16);
}
KFN float f16_to_f32(u16 h) {
  u32 sign = u32(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
  if (e == 0x1f) u = sign | 0x7f800000u | (m << 13);
  else if (e != 0) u = sign | ((e + 112) << 23) | (m << 13);
  else if (m == 0) u = sign;
  else {
    int sh = 0;
    while (!(m & 0x400u)) { m <<= 1; sh++; }
    u = sign | (u32(113 - sh) << 23) | ((m & 0x3ffu) << 13);
  }
  return bits_to_float(u);
}
KFN u16 f32_to_f16(float f) {
  u32 u = float_to_bits(f);
  u32 sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return u16(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return u16(sign | 0x7c00u);
  if (a < 0x38800000u) {
    if (a < 0x33000000u) return u16(sign);
    int e = int(a >> 23);
    u32 m = (a & 0x7fffffu) | 0x800000u;
    int shift = 126 - e;
    u32 q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return u16(sign | q);
  }
  u32 r = a + 0xfffu + ((a >> 13) & 1u) - 0x38000000u;
  return u16(sign | (r >> 13));
}

// Storage types: bf16/f16 are raw bits in distinct wrappers so that overloads can tell them apart.
struct bf16 { u16 bits; };
struct f16 { u16 bits; };
struct boolean { u8 v; };

// Element <-> double, with the CPU backend's cast rules (native/cast.h): float to integer
// truncates toward zero, NaN -> 0, saturating; anything to bool is x != 0.
KFN double to_double(float v) { return v; }
KFN double to_double(double v) { return v; }
KFN double to_double(bf16 v) { return bf16_to_f32(v.bits); }
KFN double to_double(f16 v) { return f16_to_f32(v.bits); }
KFN double to_double(i32 v) { return v; }
KFN double to_double(i64 v) { return double(v); }
KFN double to_double(i8 v) { return v; }
KFN double to_double(u8 v) { return v; }
KFN double to_double(boolean v) { return v.v; }

template <class T> struct Limits;
template <> struct Limits<i32> { static KFN double lo() { return -2147483648.0; } static KFN double hi() { return 2147483647.0; } static KFN i32 max() { return 2147483647; } };
template <> struct Limits<i64> { static KFN double lo() { return -9223372036854775808.0; } static KFN double hi() { return 9223372036854775807.0; } static KFN i64 max() { return 0x7fffffffffffffffLL; } };
template <> struct Limits<i8> { static KFN double lo() { return -128.0; } static KFN double hi() { return 127.0; } static KFN i8 max() { return 127; } };
template <> struct Limits<u8> { static KFN double lo() { return 0.0; } static KFN double hi() { return 255.0; } static KFN u8 max() { return 255; } };

template <class T> KFN T from_double(double v) {
  if (!(v == v)) return T(0);
  if (v <= Limits<T>::lo()) return T(Limits<T>::lo());
  if (v >= Limits<T>::hi()) return Limits<T>::max();  // 2^63 itself does not convert to i64
  return T(v);
}
template <> KFN float from_double<float>(double v) { return float(v); }
template <> KFN double from_double<double>(double v) { return v; }
template <> KFN bf16 from_double<bf16>(double v) { bf16 r; r.bits = f32_to_bf16(float(v)); return r; }
template <> KFN f16 from_double<f16>(double v) { f16 r; r.bits = f32_to_f16(float(v)); return r; }
template <> KFN boolean from_double<boolean>(double v) { boolean r; r.v = v != 0 ? 1 : 0; return r; }

// Element to float (the compute type of half storage).
KFN float to_float(float v) { return v; }
KFN float to_float(bf16 v) { return bf16_to_f32(v.bits); }
KFN float to_float(f16 v) { return f16_to_f32(v.bits); }
template <class T> KFN T from_float(float v) { return from_double<T>(v); }
template <> KFN float from_float<float>(float v) { return v; }

// ---------------------------------------------------------------- tensor cores (sm_80+)

// Shared memory sized at launch (cuFuncSetAttribute above 48 KB): `type* name` at its start, 16-byte aligned.
#ifdef KESTREL_EMU
#define KST_DYNAMIC_SMEM(type, name) type* name = reinterpret_cast<type*>(::kestrel::cuda::emu::g_dynamic_smem)
#else
#define KST_DYNAMIC_SMEM(type, name)                                         \
  extern __shared__ __attribute__((aligned(16))) u8 kst_dynamic_smem_[]; \
  type* name = reinterpret_cast<type*>(kst_dynamic_smem_)
#endif

// Two floats as one register of 16-bit values (round to nearest even; lo in the low half).
template <class T> KFN u32 pack2(float lo, float hi);
// The 16-bit value h of type T as a float.
template <class T> KFN float half_bits_to_f32(u16 h);
template <> KFN float half_bits_to_f32<bf16>(u16 h) { return bf16_to_f32(h); }
template <> KFN float half_bits_to_f32<f16>(u16 h) { return f16_to_f32(h); }

// Warp-collective tensor-core primitives: all 32 lanes of a warp call them together, each with
// its own registers. Fragments of mma.m16n8k16 (PTX ISA "Matrix Fragments for mma.m16n8k16"),
// g = lane / 4, t = lane % 4, the lower column (or k) in the low 16 bits of a register:
//   A 16x16 row-major: a0 (row g, cols 2t, 2t+1), a1 (row g+8, same cols), a2 (row g, cols 2t+8, 2t+9), a3 (row g+8, same)
//   B 16x8 (k x n):    b0 (k 2t, 2t+1 of col g), b1 (k 2t+8, 2t+9 of col g)
//   C/D 16x8 float:    d0, d1 (row g, cols 2t, 2t+1), d2, d3 (row g+8, cols 2t, 2t+1)
// mma_16816<T>(d, a, b): d += A B with T = bf16 or f16 operands, float accumulation.
// ldmatrix_x4(r, row) / ldmatrix_x4_trans: four 8x8 matrices of 16-bit values from shared memory;
// lane l gives the 16-byte aligned address of row l % 8 of matrix l / 8, and register i gets
// matrix i's (row g, cols 2t, 2t+1) (trans: (rows 2t, 2t+1, col g)), i.e. an A or B fragment.
// cp_async16(dst, src) / cp_async8: 16 (8) bytes global -> shared without registers, both addresses
// aligned to the size; visible after the issuing thread's cp_async_wait_all() and a barrier.
#ifdef KESTREL_EMU
template <> KFN u32 pack2<bf16>(float lo, float hi) { return u32(f32_to_bf16(lo)) | (u32(f32_to_bf16(hi)) << 16); }
template <> KFN u32 pack2<f16>(float lo, float hi) { return u32(f32_to_f16(lo)) | (u32(f32_to_f16(hi)) << 16); }
// The emulator gathers the whole warp's fragments (emu/scheduler.cc warp_exchange), then each
// lane computes its own outputs from the full matrices.
template <class T> KFN void mma_16816(float* d, const u32* a, const u32* b) {
  struct Frag { u32 a[4], b[2]; };
  Frag mine, all[32];
  for (int i = 0; i < 4; i++) mine.a[i] = a[i];
  mine.b[0] = b[0], mine.b[1] = b[1];
  ::kestrel::cuda::emu::warp_exchange(&mine, all, sizeof(Frag));
  auto half = [](u32 w, int c) { return half_bits_to_f32<T>(u16(w >> (16 * (c & 1)))); };
  const int lane = ::kestrel::cuda::emu::lane_id(), g = lane >> 2, t = lane & 3;
  for (int e = 0; e < 4; e++) {
    const int r = g + 8 * (e >> 1), n = 2 * t + (e & 1);
    float s = d[e];
    for (int c = 0; c < 16; c++) {
      const float x = half(all[4 * (r % 8) + (c % 8) / 2].a[r / 8 + 2 * (c / 8)], c);  // A[r][c]
      const float y = half(all[4 * n + (c % 8) / 2].b[c / 8], c);                      // B[c][n]
      s += x * y;
    }
    d[e] = s;
  }
}
template <bool TRANS> KFN void ldmatrix_x4_emu(u32* r, const void* row) {
  if (reinterpret_cast<u64>(row) & 15) ::kestrel::cuda::emu::trap("ldmatrix: row address not 16-byte aligned");
  const void* all[32];
  ::kestrel::cuda::emu::warp_exchange(&row, all, sizeof(row));
  const int lane = ::kestrel::cuda::emu::lane_id(), g = lane >> 2, t = lane & 3;
  for (int i = 0; i < 4; i++) {
    u16 lo, hi;
    if (TRANS) {
      lo = static_cast<const u16*>(all[8 * i + 2 * t])[g];
      hi = static_cast<const u16*>(all[8 * i + 2 * t + 1])[g];
    } else {
      lo = static_cast<const u16*>(all[8 * i + g])[2 * t];
      hi = static_cast<const u16*>(all[8 * i + g])[2 * t + 1];
    }
    r[i] = u32(lo) | (u32(hi) << 16);
  }
}
KFN void ldmatrix_x4(u32* r, const void* row) { ldmatrix_x4_emu<false>(r, row); }
KFN void ldmatrix_x4_trans(u32* r, const void* row) { ldmatrix_x4_emu<true>(r, row); }
// The copies land at the issuing thread's next wait (emu/scheduler.cc), so a tile read before its
// wait reads stale bytes in the emulator as it may on a GPU.
KFN void cp_async16(void* dst, const void* src) {
  if ((reinterpret_cast<u64>(dst) | reinterpret_cast<u64>(src)) & 15) ::kestrel::cuda::emu::trap("cp.async: address not 16-byte aligned");
  ::kestrel::cuda::emu::async_copy(dst, src, 16);
}
KFN void cp_async8(void* dst, const void* src) {
  if ((reinterpret_cast<u64>(dst) | reinterpret_cast<u64>(src)) & 7) ::kestrel::cuda::emu::trap("cp.async: address not 8-byte aligned");
  ::kestrel::cuda::emu::async_copy(dst, src, 8);
}
KFN void cp_async_wait_all() { ::kestrel::cuda::emu::async_wait_all(); }
#else
template <> KFN u32 pack2<bf16>(float lo, float hi) { u32 r; asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r; }
template <> KFN u32 pack2<f16>(float lo, float hi) { u32 r; asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo)); return r; }
template <class T> KFN void mma_16816(float* d, const u32* a, const u32* b);
#define KST_MMA_16816(T, PTX_TYPE)                                                                                          \
  template <> KFN void mma_16816<T>(float* d, const u32* a, const u32* b) {                                                \
    asm("mma.sync.aligned.m16n8k16.row.col.f32." PTX_TYPE "." PTX_TYPE ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};" \
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                                                                 \
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));                                            \
  }
KST_MMA_16816(bf16, "bf16")
KST_MMA_16816(f16, "f16")
#undef KST_MMA_16816
// A generic pointer into shared memory as a .shared address.
KFN u32 smem_address(const void* p) {
  u32 r;
  asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(r) : "l"(p));
  return r;
}
KFN void ldmatrix_x4(u32* r, const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_address(row)));
}
KFN void ldmatrix_x4_trans(u32* r, const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(smem_address(row)));
}
KFN void cp_async16(void* dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" :: "r"(smem_address(dst)), "l"(src) : "memory");
}
KFN void cp_async8(void* dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;" :: "r"(smem_address(dst)), "l"(src) : "memory");
}
KFN void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }
#endif

// ---------------------------------------------------------------- layouts

// A strided view as the TypeScript side packs it (src/backend/cuda/launch.ts): element offsets
// relative to the data pointer (the view's own offset is already added to it), dims collapsed.
#define KST_MAX_DIMS 8
struct Strided {
  i64 shape[KST_MAX_DIMS];
  i64 stride[KST_MAX_DIMS];
  i32 ndim;
  i32 contiguous;  // 1 when offset(i) == i
  i32 small;       // 1 when every index and offset fits in 31 bits (32-bit division is ~4x cheaper)
  i32 unused;
};

KFN i64 offset_of(const Strided& s, i64 i) {
  if (s.contiguous) return i;
  if (s.small) {
    u32 j = u32(i), off = 0;
    for (int d = s.ndim - 1; d >= 0; d--) {
      u32 n = u32(s.shape[d]);
      off += (j % n) * u32(s.stride[d]);
      j /= n;
    }
    return i64(off);
  }
  i64 off = 0;
  for (int d = s.ndim - 1; d >= 0; d--) {
    i64 n = s.shape[d];
    off += (i % n) * s.stride[d];
    i /= n;
  }
  return off;
}

// Grid-stride loop over [0, n).
#define KST_FOR(i, n) for (i64 i = i64(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); i += i64(gridDim.x) * blockDim.x)

// ---------------------------------------------------------------- device error record

// Records an error that a kernel met (an index out of range) in the record `err`, the first one to
// win its flag: flag, op, position, value, size, launch id. src/backend/cuda/index_errors.ts reads
// it at the next host read and words the message by the op.
KFN void record_error(i64* err, i64 op, i64 id, i64 pos, i64 v, i64 size) {
  if (atomic_cas((u64*)err, 0ull, 1ull) == 0ull) {
    err[1] = op;
    err[2] = pos;
    err[3] = v;
    err[4] = size;
    err[5] = id;
  }
}

// ---------------------------------------------------------------- reductions

template <class T> KFN T warp_sum(T v) {
  for (int m = 16; m > 0; m >>= 1) v += shfl_xor(v, m);
  return v;
}
template <class T> KFN T warp_max(T v) {
  for (int m = 16; m > 0; m >>= 1) {
    T o = shfl_xor(v, m);
    v = o > v || o != o ? o : v;  // NaN wins, as in the reference
  }
  return v;
}

// The sum over the block, returned to every thread. Every thread of the block must call it; the
// block has at most 1024 threads. `scratch` is 32 elements of shared memory.
template <class T> KFN T block_sum(T v, T* scratch) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_sum(v);
  sync();  // scratch may still be read by a previous call
  if (lane == 0) scratch[w] = v;
  sync();
  v = lane < nw ? scratch[lane] : T(0);
  return warp_sum(v);
}
template <class T> KFN T block_max(T v, T* scratch, T lowest) {
  int lane = threadIdx.x & 31, w = threadIdx.x >> 5, nw = (blockDim.x + 31) >> 5;
  v = warp_max(v);
  sync();
  if (lane == 0) scratch[w] = v;
  sync();
  v = lane < nw ? scratch[lane] : lowest;
  return warp_max(v);
}

// ---------------------------------------------------------------- atomics for every storage type

// Applies f to the 8- or 16-bit element at p with a compare-and-swap on its aligned 32-bit word
// (allocations are rounded to 512 bytes, so the word never leaves the block).
template <class E, class F> KFN void atomic_update_narrow(E* p, F f) {
  static_assert(sizeof(E) == 1 || sizeof(E) == 2, "a sub-word element");
  constexpr u32 mask = (1u << (8 * sizeof(E))) - 1u;
  u32* w = (u32*)((u64)p & ~u64(3));
  u32 shift = u32((u64)p & (4 - sizeof(E))) * 8;
  u32 old = *w, assumed;
  do {
    assumed = old;
    E cur = E((assumed >> shift) & mask);
    u32 repl = (assumed & ~(mask << shift)) | (u32(f(cur)) << shift);
    old = atomic_cas(w, assumed, repl);
  } while (assumed != old);
}

struct AddBf16 { float v; KFN u16 operator()(u16 cur) const { return f32_to_bf16(bf16_to_f32(cur) + v); } };
struct AddF16 { float v; KFN u16 operator()(u16 cur) const { return f32_to_f16(f16_to_f32(cur) + v); } };
struct AddI8 { int v; KFN u8 operator()(u8 cur) const { return u8(int(i8(cur)) + v); } };
struct AddU8 { int v; KFN u8 operator()(u8 cur) const { return u8(int(cur) + v); } };

// p[0] += x, p[1] += y in global memory (p 8-byte aligned; no result): one 8-byte reduction where
// the GPU has it (sm_90: red.global.add.v2.f32), else two float atomics.
#ifdef KESTREL_EMU
KFN void atomic_add2(float* p, float x, float y) { p[0] += x, p[1] += y; }
#elif __CUDA_ARCH__ >= 900
KFN void atomic_add2(float* p, float x, float y) { asm volatile("red.global.add.v2.f32 [%0], {%1, %2};" :: "l"(p), "f"(x), "f"(y) : "memory"); }
#else
KFN void atomic_add2(float* p, float x, float y) { atomicAdd(p, x), atomicAdd(p + 1, y); }
#endif

KFN void atomic_accumulate(float* p, double v) { atomic_add(p, float(v)); }
KFN void atomic_accumulate(double* p, double v) { atomic_add(p, v); }
KFN void atomic_accumulate(i32* p, double v) { atomic_add((u32*)p, u32(i32(i64(v)))); }
KFN void atomic_accumulate(i64* p, double v) { atomic_add((u64*)p, u64(i64(v))); }
KFN void atomic_accumulate(bf16* p, double v) { AddBf16 f; f.v = float(v); atomic_update_narrow(&p->bits, f); }
KFN void atomic_accumulate(f16* p, double v) { AddF16 f; f.v = float(v); atomic_update_narrow(&p->bits, f); }
KFN void atomic_accumulate(i8* p, double v) { AddI8 f; f.v = int(v); atomic_update_narrow((u8*)p, f); }
KFN void atomic_accumulate(u8* p, double v) { AddU8 f; f.v = int(v); atomic_update_narrow(p, f); }

// ---------------------------------------------------------------- Philox4x32-10 (src/tensor/rng.ts)

struct Philox4 { u32 w[4]; };
KFN Philox4 philox(u32 k0, u32 k1, u64 counter) {
  const u32 M0 = 0xd2511f53u, M1 = 0xcd9e8d57u, W0 = 0x9e3779b9u, W1 = 0xbb67ae85u;
  u32 c0 = u32(counter), c1 = u32(counter >> 32), c2 = 0, c3 = 0;
  for (int r = 0; r < 10; r++) {
    u32 hi0 = mulhi(M0, c0), lo0 = M0 * c0, hi1 = mulhi(M1, c2), lo1 = M1 * c2;
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += W0;
    k1 += W1;
  }
  Philox4 out;
  out.w[0] = c0; out.w[1] = c1; out.w[2] = c2; out.w[3] = c3;
  return out;
}
// Uniform element i of the draw (seed k0/k1, counter base): word i%4 of block base + i/4.
KFN float philox_uniform(u32 k0, u32 k1, u64 base, u64 i) {
  Philox4 b = philox(k0, k1, base + i / 4);
  return float(double(b.w[i % 4] >> 8) * (1.0 / 16777216.0));
}

}  // namespace kst
