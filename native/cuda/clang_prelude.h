// For the CI compile check only (test/backend/cuda_sources.test.ts): lets Debian's clang compile
// the kernel files to PTX with no CUDA SDK (`clang -x cuda --cuda-device-only -nocudainc
// -nocudalib -include clang_prelude.h`). NVRTC defines all of this itself. The intrinsics and
// math functions are declared, not defined: the check is that every kernel parses, type-checks
// and lowers to PTX, so a typo in a kernel fails `npm test` on machines without a GPU.
#pragma once
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __host__ __attribute__((host))
#define __shared__ __attribute__((shared))
#define __constant__ __attribute__((constant))
#define __forceinline__ __inline__ __attribute__((always_inline))
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...) __attribute__((launch_bounds(__VA_ARGS__)))
#include <__clang_cuda_builtin_vars.h>

__device__ void __syncthreads();
__device__ void __syncwarp(unsigned mask = 0xffffffffu);
__device__ int __shfl_xor_sync(unsigned, int, int, int = 32);
__device__ unsigned __shfl_xor_sync(unsigned, unsigned, int, int = 32);
__device__ float __shfl_xor_sync(unsigned, float, int, int = 32);
__device__ double __shfl_xor_sync(unsigned, double, int, int = 32);
__device__ long long __shfl_xor_sync(unsigned, long long, int, int = 32);
__device__ int __shfl_sync(unsigned, int, int, int = 32);
__device__ unsigned __shfl_sync(unsigned, unsigned, int, int = 32);
__device__ float __shfl_sync(unsigned, float, int, int = 32);
__device__ double __shfl_sync(unsigned, double, int, int = 32);
__device__ long long __shfl_sync(unsigned, long long, int, int = 32);
__device__ unsigned __ballot_sync(unsigned, int);
__device__ unsigned atomicCAS(unsigned*, unsigned, unsigned);
__device__ unsigned long long atomicCAS(unsigned long long*, unsigned long long, unsigned long long);
__device__ float atomicAdd(float*, float);
__device__ double atomicAdd(double*, double);
__device__ unsigned atomicAdd(unsigned*, unsigned);
__device__ unsigned long long atomicAdd(unsigned long long*, unsigned long long);
__device__ float __uint_as_float(unsigned);
__device__ unsigned __float_as_uint(float);
__device__ double __longlong_as_double(long long);
__device__ long long __double_as_longlong(double);
__device__ unsigned __umulhi(unsigned, unsigned);
__device__ double __dmul_rn(double, double);
__device__ float __expf(float);
__device__ float __logf(float);
__device__ float __fdividef(float, float);

#define KST_DECLARE_MATH(name) \
  __device__ float name##f(float); \
  __device__ double name(double);
KST_DECLARE_MATH(exp)
KST_DECLARE_MATH(exp2)
KST_DECLARE_MATH(log)
KST_DECLARE_MATH(sqrt)
KST_DECLARE_MATH(rsqrt)
KST_DECLARE_MATH(tanh)
KST_DECLARE_MATH(erf)
KST_DECLARE_MATH(erfc)
KST_DECLARE_MATH(sin)
KST_DECLARE_MATH(cos)
KST_DECLARE_MATH(floor)
KST_DECLARE_MATH(fabs)
KST_DECLARE_MATH(log1p)
KST_DECLARE_MATH(expm1)
KST_DECLARE_MATH(trunc)
__device__ float powf(float, float);
__device__ double pow(double, double);
__device__ float fmaxf(float, float);
__device__ float fminf(float, float);
__device__ double fmax(double, double);
__device__ double fmin(double, double);
