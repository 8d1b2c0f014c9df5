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

std::multimap<size_t, uint64_t> g_cached;          // size -> free block
std::unordered_map<uint64_t, size_t> g_live;       // block -> size
AllocatorStats g_stats;

// Graph pools: blocks owned by a graph (see runtime.h). Pool 0 is "no pool".
struct Pool {
  std::multimap<size_t, uint64_t> free;
  std::vector<std::pair<size_t, uint64_t>> reserved;  // freed inputs of the captured work
};
std::map<uint64_t, Pool> g_pools;                  // graph id (or the capture in progress, kCapturing) -> pool
std::unordered_map<uint64_t, uint64_t> g_owner;    // block -> pool id
constexpr uint64_t kCapturing = ~uint64_t(0);
bool g_capturing = false;

// Takes a block of at least `size` bytes from `cache` (within 1/8 of it); 0 when none fits.
uint64_t take(std::multimap<size_t, uint64_t>& cache, size_t& size) {
  auto it = cache.lower_bound(size);
  if (it == cache.end() || it->first > size + size / 8) return 0;
  size = it->first;
  uint64_t p = it->second;
  cache.erase(it);
  return p;
}

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
  uint64_t p = g_capturing ? take(g_pools[kCapturing].free, size) : 0;
  if (!p) p = take(g_cached, size);
  if (!p) {
    p = d.raw_alloc(size);
    if (!p && !g_capturing && !g_cached.empty()) {  // releasing memory synchronizes: not inside a capture
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
  if (g_capturing) g_owner[p] = kCapturing;
  g_stats.allocated += size;
  g_stats.blocks++;
  g_stats.peak_allocated = std::max(g_stats.peak_allocated, g_stats.allocated);
  return p;
}

void free(uint64_t p) {
  auto it = g_live.find(p);
  if (it == g_live.end()) throw CudaError("free of an unknown device pointer (double free?)");
  auto owner = g_owner.find(p);
  auto pool = owner == g_owner.end() ? g_pools.end() : g_pools.find(owner->second);
  if (pool != g_pools.end()) pool->second.free.emplace(it->second, p);
  else if (g_capturing && owner == g_owner.end()) {
    // made before the capture and freed inside it: the captured work may read it on every
    // replay, so it stays reserved (neither reused nor cached) until the graph is freed
    g_owner[p] = kCapturing;
    g_pools[kCapturing].reserved.emplace_back(it->second, p);
  } else {
    if (owner != g_owner.end()) g_owner.erase(owner);
    g_cached.emplace(it->second, p);
  }
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

void graph_capture_begin() {
  if (g_capturing) throw CudaError("a CUDA graph is already being captured");
  device().capture_begin();
  g_capturing = true;
  g_pools[kCapturing] = Pool{};
}

// Moves the capture's pool to the graph's id.
static void adopt_pool(uint64_t graph) {
  Pool pool = std::move(g_pools[kCapturing]);
  g_pools.erase(kCapturing);
  for (auto& [block, owner] : g_owner)
    if (owner == kCapturing) owner = graph;
  g_pools[graph] = std::move(pool);
}

uint64_t graph_capture_end() {
  if (!g_capturing) throw CudaError("no CUDA graph capture in progress");
  g_capturing = false;
  uint64_t graph = 0;
  try {
    graph = device().capture_end();
  } catch (...) {
    adopt_pool(0);
    graph_free(0);
    throw;
  }
  adopt_pool(graph);
  return graph;
}

void graph_capture_abort() {
  if (!g_capturing) return;
  g_capturing = false;
  try {
    device().capture_end();
  } catch (...) {
    // the capture was invalidated by the error that aborts it
  }
  adopt_pool(0);
  graph_free(0);
}

bool capturing() { return g_capturing; }

void graph_launch(uint64_t graph) {
  if (g_capturing) throw CudaError("cannot replay a CUDA graph while capturing another");
  device().graph_launch(graph);
}

void graph_free(uint64_t graph) {
  auto it = g_pools.find(graph);
  if (it == g_pools.end()) return;
  if (graph != 0) device().graph_free(graph);
  for (auto& [size, p] : it->second.free) {
    g_owner.erase(p);
    g_cached.emplace(size, p);
  }
  for (auto& [size, p] : it->second.reserved) {
    g_owner.erase(p);
    g_cached.emplace(size, p);
  }
  // blocks still held by tensors go to the general cache when those tensors are freed
  for (auto o = g_owner.begin(); o != g_owner.end();) o = o->second == graph ? g_owner.erase(o) : std::next(o);
  g_pools.erase(it);
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
