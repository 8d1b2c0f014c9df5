// Makes a CUDA C kernel file compile as host C++ for the emulator (emu.h): the CUDA keywords
// become plain C++, the built-in index variables read the scheduler's current thread, and the
// intrinsics that common.cuh wraps are implemented on the host. Included only by the
// emulator's wrapper files (native/cuda/emu/k_*.cc), never by the GPU build.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "emu.h"

#define KESTREL_EMU 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __shared__ static
#define __launch_bounds__(...)
#define threadIdx (::kestrel::cuda::emu::g_thread_idx)
#define blockIdx (::kestrel::cuda::emu::g_block_idx)
#define blockDim (::kestrel::cuda::emu::g_block_dim)
#define gridDim (::kestrel::cuda::emu::g_grid_dim)

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __saturatef(float x) { return x < 0.f ? 0.f : x > 1.f ? 1.f : x; }
using std::erf;
using std::erfc;
using std::exp;
using std::log;
using std::sqrt;
using std::tanh;

// A kernel declared with KERNEL(name, (params)) { body } is extern "C" and registered by name.
#define KERNEL(name, params)                                                        \
  extern "C" void name params;                                                      \
  static ::kestrel::cuda::emu::Registrar kestrel_emu_registrar_##name(#name, &name); \
  extern "C" void name params
#define KERNEL_BOUNDS(name, threads, min_blocks, params) KERNEL(name, params)
#define KST_UNROLL
