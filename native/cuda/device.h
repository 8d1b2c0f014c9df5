// One CUDA device as the rest of the addon sees it: raw memory, copies, modules, launches,
// GEMM and graph capture, all ordered on one compute stream. Two implementations: the GPU
// (device_gpu.cc, the driver API and cuBLASLt) and the host emulator (device_emu.cc), which runs
// the same kernel sources on the CPU so that CI exercises the CUDA backend without a GPU.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kestrel::cuda {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// Row-major C[b] (ldc) = alpha op(A[b]) op(B[b]) + beta C[b], b < batch, with element strides
// between batch entries; op(A) is A [M, K] or, transposed, A stored [K, M]. dtype is the
// storage type of A and B (float32, bfloat16, float16 or float64), out_dtype that of C (dtype, or
// float32 for half A and B), always accumulated in float32 (tf32 only when allowed).
struct GemmArgs {
  int dtype = 0;
  int out_dtype = 0;
  bool transA = false, transB = false;
  int64_t M = 0, N = 0, K = 0, batch = 1;
  uint64_t A = 0, B = 0, C = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t strideA = 0, strideB = 0, strideC = 0;
  float alpha = 1, beta = 0;
  bool tf32 = false;
  // a bias vector of N values of the output's dtype added to every row of C before it is rounded
  // (cuBLASLt's BIAS epilogue); 0: none
  uint64_t bias = 0;
};

struct DeviceInfo {
  std::string name;
  int cc_major = 0, cc_minor = 0;
  int sm_count = 0;
  size_t total_memory = 0;
  size_t l2_bytes = 0;
  size_t smem_optin = 0;  // largest dynamic shared memory a kernel may opt in to
  bool emulated = false;
};

class Device {
 public:
  virtual ~Device() = default;
  virtual const DeviceInfo& info() const = 0;
  // Raw device memory; 0 when the device is out of memory. The caching allocator sits on top.
  virtual uint64_t raw_alloc(size_t bytes) = 0;
  virtual void raw_free(uint64_t ptr) = 0;
  virtual void mem_info(size_t* free_bytes, size_t* total_bytes) = 0;
  virtual void upload(uint64_t dst, const void* src, size_t n) = 0;
  virtual void download(void* dst, uint64_t src, size_t n) = 0;  // waits for the work queued before it
  virtual void copy(uint64_t dst, uint64_t src, size_t n) = 0;
  virtual void zero(uint64_t dst, size_t n) = 0;
  // A module from a compiled image (cubin); the emulator ignores the image and serves `name`'s kernels.
  virtual uint64_t load_module(const std::string& name, const std::string& image) = 0;
  // A kernel of a module, and the byte size of each of its parameters (empty when unknown).
  virtual uint64_t function(uint64_t module, const std::string& name, std::vector<size_t>* param_sizes) = 0;
  virtual void set_max_dynamic_smem(uint64_t fn, unsigned bytes) = 0;
  virtual void launch(uint64_t fn, Dim3 grid, Dim3 block, unsigned smem, const void* args, size_t bytes) = 0;
  virtual void gemm(const GemmArgs& g) = 0;
  virtual void synchronize() = 0;
  // Stream capture into a replayable graph (CUDA graphs); the emulator records launches itself.
  virtual void capture_begin() = 0;
  virtual uint64_t capture_end() = 0;
  virtual void graph_launch(uint64_t graph) = 0;
  virtual void graph_free(uint64_t graph) = 0;
  // Milliseconds of device time for the work queued between two markers (events).
  virtual uint64_t event_record() = 0;
  virtual float event_elapsed_ms(uint64_t start, uint64_t end) = 0;
  virtual void event_free(uint64_t event) = 0;
};

std::unique_ptr<Device> make_gpu_device(int ordinal);  // throws CudaError naming what is missing
std::unique_ptr<Device> make_emulated_device();

}  // namespace kestrel::cuda
