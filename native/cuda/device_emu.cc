// The emulated device: device memory is host memory, kernels run through the emulator
// (emu/scheduler.cc), GEMM is a plain host loop with the same row-major contract as cuBLASLt's
// path. Used by tests on machines without a GPU (KESTREL_CUDA_EMULATE=1); slow by design.
#include <chrono>
#include <cstdlib>
#include <functional>
#include <map>
#include <stdexcept>
#include <unistd.h>

#include "api.h"
#include "device.h"
#include "staging.h"
#include "emu/emu.h"
#include "../kernel_api.h"

namespace kestrel::cuda {

namespace {

class EmuDevice final : public Device {
 public:
  EmuDevice() {
    info_.name = "Kestrel CUDA emulator (host CPU)";
    info_.cc_major = 8;
    info_.cc_minor = 0;
    info_.sm_count = 1;
    info_.l2_bytes = 1 << 20;
    info_.smem_optin = 99 * 1024;
    info_.total_memory = size_t(sysconf(_SC_PHYS_PAGES)) * size_t(sysconf(_SC_PAGE_SIZE));
    info_.emulated = true;
  }
  const DeviceInfo& info() const override { return info_; }

  uint64_t raw_alloc(size_t bytes) override {
    size_t n = (bytes + 511) / 512 * 512;
    void* p = std::aligned_alloc(256, n ? n : 512);
    if (!p) return 0;
    std::memset(p, 0xff, n);  // fresh device memory reads as NaN, so a kernel that reads before writing is caught
    return reinterpret_cast<uint64_t>(p);
  }
  void raw_free(uint64_t p) override { std::free(reinterpret_cast<void*>(p)); }
  void mem_info(size_t* free_bytes, size_t* total_bytes) override {
    *total_bytes = info_.total_memory;
    *free_bytes = size_t(sysconf(_SC_AVPHYS_PAGES)) * size_t(sysconf(_SC_PAGE_SIZE));
  }
  // Large copies take the GPU's staging pipeline (staging.h), through host buffers, so that the
  // emulated tests cover its chunking; no copy is captured (the binding refuses them), so each runs now.
  void upload(uint64_t dst, const void* src, size_t n) override {
    if (staged(n, chunk_)) return staged_upload(staging_ops_, chunk_, dst, static_cast<const char*>(src), n);
    std::string bytes(static_cast<const char*>(src), n);
    run([=] { std::memcpy(reinterpret_cast<void*>(dst), bytes.data(), n); });
  }
  void download(void* dst, uint64_t src, size_t n) override {
    if (staged(n, chunk_)) return staged_download(staging_ops_, chunk_, static_cast<char*>(dst), src, n);
    std::memcpy(dst, reinterpret_cast<const void*>(src), n);
  }
  void copy(uint64_t dst, uint64_t src, size_t n) override {
    run([=] { std::memmove(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), n); });
  }
  void zero(uint64_t dst, size_t n) override {
    run([=] { std::memset(reinterpret_cast<void*>(dst), 0, n); });
  }

  uint64_t load_module(const std::string& name, const std::string&) override {
    modules_.push_back(name);
    return modules_.size();
  }
  uint64_t function(uint64_t, const std::string& name, std::vector<size_t>* sizes) override {
    const emu::KernelEntry* k = emu::find_kernel(name);
    if (!k) throw CudaError("emulator: no kernel named " + name + " (is its .cu file wrapped in native/cuda/emu/?)");
    if (sizes) *sizes = k->param_sizes;
    return reinterpret_cast<uint64_t>(k);
  }
  void set_max_dynamic_smem(uint64_t, unsigned bytes) override {
    if (bytes > info_.smem_optin) throw CudaError("emulator: " + std::to_string(bytes) + " bytes of shared memory requested");
  }
  void launch(uint64_t fn, Dim3 grid, Dim3 block, unsigned smem, const void* args, size_t bytes) override {
    const auto* k = reinterpret_cast<const emu::KernelEntry*>(fn);
    std::string packed(static_cast<const char*>(args), bytes);
    run([=] {
      emu::Dim3 g{grid.x, grid.y, grid.z}, b{block.x, block.y, block.z};
      try {
        emu::launch(*k, g, b, smem, packed.data(), packed.size());
      } catch (const std::runtime_error& e) {
        throw CudaError(e.what());
      }
    });
  }
  void gemm(const GemmArgs& g) override {
    run([=] { host_gemm(g); });
  }
  void synchronize() override {}

  void capture_begin() override {
    if (capturing_) throw CudaError("emulator: capture already in progress");
    capturing_ = true;
    recorded_.clear();
  }
  uint64_t capture_end() override {
    if (!capturing_) throw CudaError("emulator: capture_end without capture_begin");
    capturing_ = false;
    graphs_[++next_graph_] = std::move(recorded_);
    recorded_.clear();
    return next_graph_;
  }
  void graph_launch(uint64_t g) override {
    auto it = graphs_.find(g);
    if (it == graphs_.end()) throw CudaError("emulator: unknown graph");
    for (auto& op : it->second) op();
  }
  void graph_free(uint64_t g) override { graphs_.erase(g); }

  uint64_t event_record() override {
    auto t = std::chrono::steady_clock::now().time_since_epoch();
    return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(t).count());
  }
  float event_elapsed_ms(uint64_t start, uint64_t end) override { return float(double(end - start) / 1e6); }
  void event_free(uint64_t) override {}

 private:
  // Runs an operation now, or records it while a graph is being captured.
  void run(std::function<void()> op) {
    if (capturing_) recorded_.push_back(std::move(op));
    else op();
  }

  template <class T, class Load, class U, class LoadOut, class Store>
  static void gemm_typed(const GemmArgs& g, Load load, LoadOut load_out, Store store) {
    const T* A = reinterpret_cast<const T*>(g.A);
    const T* B = reinterpret_cast<const T*>(g.B);
    U* C = reinterpret_cast<U*>(g.C);
    const U* bias = reinterpret_cast<const U*>(g.bias);
    std::vector<double> row(size_t(g.N));
    for (int64_t b = 0; b < g.batch; b++)
      for (int64_t i = 0; i < g.M; i++) {
        std::fill(row.begin(), row.end(), 0.0);
        for (int64_t k = 0; k < g.K; k++) {
          double a = load(A[b * g.strideA + (g.transA ? k * g.lda + i : i * g.lda + k)]);
          for (int64_t j = 0; j < g.N; j++) row[size_t(j)] += a * load(B[b * g.strideB + (g.transB ? j * g.ldb + k : k * g.ldb + j)]);
        }
        for (int64_t j = 0; j < g.N; j++) {
          U& c = C[b * g.strideC + i * g.ldc + j];
          double v = g.alpha * row[size_t(j)] + (g.beta != 0 ? g.beta * load_out(c) : 0.0) + (bias ? load_out(bias[j]) : 0.0);
          c = store(v);
        }
      }
  }

  // Inputs of type T (read through `load`), output of type U (float32 when out_dtype is 0).
  template <class T, class Load>
  static void gemm_in(const GemmArgs& g, Load load, double (*load_half)(uint16_t), uint16_t (*store_half)(double)) {
    if (g.out_dtype == 0)
      return gemm_typed<T, Load, float>(g, load, [](float v) { return double(v); }, [](double v) { return float(v); });
    if (g.out_dtype == 1)
      return gemm_typed<T, Load, double>(g, load, [](double v) { return v; }, [](double v) { return v; });
    return gemm_typed<T, Load, uint16_t>(g, load, load_half, store_half);
  }

  static double f16_load(uint16_t v) { return double(f16_to_f32(v)); }
  static uint16_t f16_store(double v) { return f32_to_f16(float(v)); }
  static double bf16_load(uint16_t v) { return double(bf16_to_f32(v)); }
  static uint16_t bf16_store(double v) { return f32_to_bf16(float(v)); }

  static void host_gemm(const GemmArgs& g) {
    if (g.out_dtype != g.dtype && !(g.out_dtype == 0 && (g.dtype == 2 || g.dtype == 3)))
      throw CudaError("emulator gemm: output dtype code " + std::to_string(g.out_dtype) + " with inputs " + std::to_string(g.dtype));
    switch (g.dtype) {
      case 0: return gemm_in<float>(g, [](float v) { return double(v); }, nullptr, nullptr);
      case 1: return gemm_in<double>(g, [](double v) { return v; }, nullptr, nullptr);
      case 2: return gemm_in<uint16_t>(g, f16_load, f16_load, f16_store);
      case 3: return gemm_in<uint16_t>(g, bf16_load, bf16_load, bf16_store);
    }
    throw CudaError("emulator gemm: unsupported dtype code " + std::to_string(g.dtype));
  }

  DeviceInfo info_;
  std::vector<std::string> modules_;
  struct StagingOps {
    EmuDevice& d;
    int next = 0;
    char* buffer(int b) {
      if (d.buffers_[b].size() < d.chunk_) d.buffers_[b].resize(d.chunk_);
      return d.buffers_[b].data();
    }
    void wait(int) {}  // every copy below is done when it returns
    void to_device(uint64_t dst, int b, size_t n) { std::memcpy(reinterpret_cast<void*>(dst), buffer(b), n); }
    void to_host(int b, uint64_t src, size_t n) { std::memcpy(buffer(b), reinterpret_cast<const void*>(src), n); }
  };
  const size_t chunk_ = staging_chunk();
  std::vector<char> buffers_[2];
  StagingOps staging_ops_{*this};
  bool capturing_ = false;
  std::vector<std::function<void()>> recorded_;
  std::map<uint64_t, std::vector<std::function<void()>>> graphs_;
  uint64_t next_graph_ = 0;
};

}  // namespace

std::unique_ptr<Device> make_emulated_device() { return std::make_unique<EmuDevice>(); }

}  // namespace kestrel::cuda
