// The contract between binding.cc (the only file that sees N-API) and the kernel files:
// strided views over native storage, a reader for a kernel's packed arguments, registration
// by name, and the thread pool. Kernels are plain C++ over pointers and sizes (llm.c style).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <functional>
#include <stdexcept>
#include <string>

namespace kestrel {

// Codes shared with src/backend/cpu/native.ts (DTYPE_CODE); keep them in step.
enum DType : int { F32 = 0, F64 = 1, F16 = 2, BF16 = 3, I32 = 4, I64 = 5, I8 = 6, U8 = 7, BOOL = 8 };
size_t dtype_size(int dtype);
const char* dtype_name(int dtype);

constexpr int kMaxDims = 8;

// A strided window onto one storage block. Strides and offset count elements, never bytes.
// Args::view() has already checked that every element it can address lies inside the block.
struct View {
  char* data = nullptr;  // start of the storage block
  int dtype = F32;
  int64_t offset = 0;
  int ndim = 0;
  int64_t shape[kMaxDims] = {0};
  int64_t stride[kMaxDims] = {0};

  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
  }
  bool contiguous() const {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
      if (shape[i] != 1 && stride[i] != s) return false;
      s *= shape[i];
    }
    return true;
  }
  int64_t size(int d) const { return shape[d < 0 ? d + ndim : d]; }
  template <class T> T* ptr() const { return reinterpret_cast<T*>(data) + offset; }
};

// Thrown for bad input; binding.cc turns it into a JS Error prefixed with the kernel name.
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Refuses bad input: "<kernel>: <why>" (the kernels' one way to throw KernelError).
[[noreturn]] inline void fail(const char* kernel, const std::string& why) { throw KernelError(std::string(kernel) + ": " + why); }

// A per-thread float buffer (packing panels, decoded weight tiles) grown on first use to the
// largest size that thread needed and then reused, so hot loops never allocate. 64-byte aligned.
struct ScratchBuffer {
  const char* owner;  // named in the out-of-memory error
  std::unique_ptr<float, decltype(&std::free)> data{nullptr, &std::free};
  size_t floats = 0;
  explicit ScratchBuffer(const char* owner) : owner(owner) {}
  float* get(size_t n) {
    if (n > floats) {
      size_t bytes = (n * sizeof(float) + 63) & ~size_t(63);
      data.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      if (!data) throw KernelError(std::string(owner) + ": out of memory for a " + std::to_string(bytes) + "-byte buffer");
      floats = n;
    }
    return data.get();
  }
  // Grows to n floats now and touches every page, so the first kernel call that needs them
  // takes no page faults (called from ThreadWarmup hooks).
  void reserve(size_t n) {
    float* p = get(n);
    std::memset(p, 0, n * sizeof(float));
  }
};

std::string shape_str(const View& v);

// Reads a kernel's arguments in the order src/backend/cpu/native.ts packed them.
class Args {
 public:
  Args(const double* buf, size_t n) : buf_(buf), n_(n) {}
  View view();           // handle, dtype, offset, ndim, shape..., strides... (validated)
  bool has_view();       // false when the packer wrote a null view (handle 0)
  double num();          // a plain number
  int64_t i64();         // an integral number (checked)
  bool flag() { return num() != 0; }
  void done() const;     // throws if arguments are left over (packer/kernel mismatch)

 private:
  double next();
  const double* buf_;
  size_t n_;
  size_t pos_ = 0;
};

using KernelFn = void (*)(Args&);
struct KernelRegistration {
  KernelRegistration(const char* name, KernelFn fn);
};
struct KernelEntry {
  const char* name;
  KernelFn fn;
};
const KernelEntry* kernel_table(size_t* count);

#define KESTREL_KERNEL(NAME)                                                        \
  static void kernel_##NAME(::kestrel::Args& args);                                 \
  static ::kestrel::KernelRegistration registration_##NAME(#NAME, kernel_##NAME); \
  static void kernel_##NAME(::kestrel::Args& args)

// Storage blocks: 64-byte aligned, from the caching allocator (alloc.h), so a new block holds
// whatever its last user left unless `zero`; addressed from JS by a handle (slot + generation),
// so a stale handle is an error instead of a use-after-free.
double storage_alloc(size_t bytes, bool zero);
void storage_free(double handle);
// A storage over memory the caller owns (a shared-memory region of dist_shm.cc): freeing its
// handle calls release(context) instead of returning a block to the allocator.
double storage_adopt(char* data, size_t bytes, void (*release)(void*), void* context);
char* storage_lookup(double handle, size_t* bytes);  // throws KernelError on a bad handle
size_t storage_live_bytes();
size_t storage_live_blocks();

// Thread pool: f(begin, end) over [0, n) split into chunks of at least `grain` items.
int num_threads();
void set_num_threads(int n);
// Per-thread set-up that kernels register (gemm.cc pre-faults its packing buffers): each pool
// thread runs every hook as it starts, and warm_pool() runs them on the calling thread after
// starting the pool, so a process's first products run as fast as its later ones.
// KESTREL_WARMUP=0 skips the hooks (threads then start cold, as before).
struct ThreadWarmup {
  explicit ThreadWarmup(void (*hook)());
};
void warm_pool();
void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& f);

struct CpuFeatures {
  bool avx2, fma, avx512f, f16c;
  // The half-precision GEMM's paths (gemm_half.cc): AVX-512 BW (16-bit masked loads) with BF16
  // (vdpbf16ps), and AMX tiles with BF16 (the CPU has them and the OS saves their state, XCR0
  // bits 17-18; Linux still has to grant each process the tile data, see gemm_amx.cc).
  bool avx512bw, avx512bf16, amx_bf16;
  // The int8-activation decode GEMV (quant_gemv_int8.cc): vpdpbusd on zmm (AVX512_VNNI) or on
  // ymm with the VEX encoding (AVX-VNNI, CPUs without AVX-512 such as Alder Lake and Zen 5 desktop).
  bool avx512vnni, avxvnni;
};
const CpuFeatures& cpu_features();

// Conversions between float and the 16-bit storage formats (round to nearest even).
uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);
uint16_t f32_to_bf16(float f);
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  __builtin_memcpy(&f, &u, 4);
  return f;
}

}  // namespace kestrel
