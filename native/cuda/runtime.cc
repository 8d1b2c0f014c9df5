// The process-wide CUDA state behind runtime.h: one device, its caching allocator, NVRTC.
#include "runtime.h"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace kestrel::cuda {

namespace {

std::unique_ptr<Device> g_device;
std::string g_init_error;

std::multimap<size_t, uint64_t> g_cached;          // size -> free block
std::unordered_map<uint64_t, size_t> g_live;       // block -> size
AllocatorStats g_stats;

size_t round_size(size_t n) {
  const size_t MiB = size_t(1) << 20;
  size_t q = n < MiB ? 512 : n < 64 * MiB ? 128 * 1024 : 2 * MiB;
  n = n ? n : 1;
  return (n + q - 1) / q * q;
}

std::string mib(size_t b) { return std::to_string(b >> 20) + " MiB"; }

}  // namespace

void init(bool emulate, int ordinal) {
  if (g_device) return;
  g_device = emulate ? make_emulated_device() : make_gpu_device(ordinal);
}

bool initialised() { return g_device != nullptr; }

Device& device() {
  if (!g_device) throw CudaError("the CUDA device is not initialised");
  return *g_device;
}

uint64_t alloc(size_t bytes) {
  Device& d = device();
  size_t size = round_size(bytes);
  auto it = g_cached.lower_bound(size);
  uint64_t p = 0;
  if (it != g_cached.end() && it->first <= size + size / 8) {
    size = it->first;
    p = it->second;
    g_cached.erase(it);
  } else {
    p = d.raw_alloc(size);
    if (!p && !g_cached.empty()) {
      empty_cache();
      p = d.raw_alloc(size);
    }
    if (!p) {
      size_t free_b = 0, total = 0;
      d.mem_info(&free_b, &total);
      throw CudaError("out of memory: asked for " + std::to_string(bytes) + " bytes (" + mib(size) + "); Kestrel holds " +
                      mib(g_stats.allocated) + " in " + std::to_string(g_stats.blocks) + " tensors, the device has " + mib(free_b) +
                      " free of " + mib(total));
    }
    g_stats.reserved += size;
    g_stats.driver_allocs++;
    g_stats.peak_reserved = std::max(g_stats.peak_reserved, g_stats.reserved);
  }
  g_live[p] = size;
  g_stats.allocated += size;
  g_stats.blocks++;
  g_stats.peak_allocated = std::max(g_stats.peak_allocated, g_stats.allocated);
  return p;
}

void free(uint64_t p) {
  auto it = g_live.find(p);
  if (it == g_live.end()) throw CudaError("free of an unknown device pointer (double free?)");
  g_cached.emplace(it->second, p);
  g_stats.allocated -= it->second;
  g_stats.blocks--;
  g_live.erase(it);
}

size_t block_size(uint64_t p) {
  auto it = g_live.find(p);
  if (it == g_live.end()) throw CudaError("not a live device block (freed tensor?)");
  return it->second;
}

void empty_cache() {
  Device& d = device();
  for (auto& [size, p] : g_cached) {
    d.raw_free(p);
    g_stats.reserved -= size;
  }
  g_cached.clear();
}

AllocatorStats allocator_stats() { return g_stats; }

void reset_peak() {
  g_stats.peak_allocated = g_stats.allocated;
  g_stats.peak_reserved = g_stats.reserved;
}

CompileResult compile(const std::string& name, const std::string& source, const std::vector<std::string>& header_names,
                      const std::vector<std::string>& header_sources, const std::vector<std::string>& options) {
  const CudaApi& a = api();
  if (!a.nvrtcCompileProgram) throw CudaError("kernels are compiled with NVRTC: " + load_report().nvrtc.error);
  std::vector<const char*> hn, hs, opts;
  for (auto& s : header_names) hn.push_back(s.c_str());
  for (auto& s : header_sources) hs.push_back(s.c_str());
  for (auto& s : options) opts.push_back(s.c_str());
  nvrtcProgram prog = nullptr;
  nvrtcResult r = a.nvrtcCreateProgram(&prog, source.c_str(), name.c_str(), int(hs.size()), hs.data(), hn.data());
  if (r != 0) throw CudaError(std::string("nvrtcCreateProgram(") + name + "): " + a.nvrtcGetErrorString(r));
  CompileResult out;
  r = a.nvrtcCompileProgram(prog, int(opts.size()), opts.data());
  size_t log_size = 0;
  a.nvrtcGetProgramLogSize(prog, &log_size);
  if (log_size > 1) {
    out.log.resize(log_size);
    a.nvrtcGetProgramLog(prog, &out.log[0]);
    out.log.resize(log_size - 1);
  }
  if (r == 0) {
    size_t n = 0;
    a.nvrtcGetCUBINSize(prog, &n);
    out.image.resize(n);
    if (n) a.nvrtcGetCUBIN(prog, &out.image[0]);
    out.ok = n > 0;
    if (!out.ok) out.log += "\n(NVRTC produced no cubin: compile for a real architecture, e.g. sm_90a, not compute_90)";
  } else {
    out.log = std::string(a.nvrtcGetErrorString(r)) + "\n" + out.log;
  }
  a.nvrtcDestroyProgram(&prog);
  return out;
}

}  // namespace kestrel::cuda
