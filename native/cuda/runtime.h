// The addon's CUDA state, shared by binding.cc: the loaded libraries, the current device, its
// caching allocator, kernel compilation with NVRTC, and modules/functions addressed by id.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "api.h"
#include "device.h"

namespace kestrel::cuda {

// Opens the device (the GPU `ordinal`, or the host emulator); once per process.
void init(bool emulate, int ordinal);
bool initialised();
Device& device();  // throws CudaError when init() has not succeeded

// ---------------------------------------------------------------- caching allocator
// Blocks are rounded up (512 B under 1 MiB, 128 KiB under 64 MiB, 2 MiB above) and, when freed,
// kept for reuse instead of being returned to the driver: the hot path never calls cuMemAlloc or
// cuMemFree. A request takes the smallest cached block that fits within 1/8 of its size; when the
// driver is out of memory, the cache is released and the allocation tried once more.
struct AllocatorStats {
  size_t allocated = 0;       // bytes in live blocks (rounded)
  size_t reserved = 0;        // bytes obtained from the driver (live + cached)
  size_t peak_allocated = 0;
  size_t peak_reserved = 0;
  size_t blocks = 0;          // live blocks
  size_t driver_allocs = 0;   // calls that reached the driver
};
uint64_t alloc(size_t bytes);  // throws CudaError ("out of memory: ...") when nothing fits
void free(uint64_t ptr);        // throws on a pointer that is not a live block
size_t block_size(uint64_t ptr);  // the usable bytes of a live block; throws otherwise
void empty_cache();
AllocatorStats allocator_stats();
void reset_peak();

// ---------------------------------------------------------------- CUDA graphs
// While a graph is captured, every block allocated belongs to that graph's private pool: freed
// inside the capture it may be reused only by later allocations of the same capture (replay
// order equals capture order), and after the capture it is never handed to other work, because
// replays write into it. Freeing the graph returns its pool to the general cache.
void graph_capture_begin();
uint64_t graph_capture_end();     // -> graph id
void graph_capture_abort();       // ends a failed capture, discarding the graph
bool capturing();
void graph_launch(uint64_t graph);
void graph_free(uint64_t graph);

// ---------------------------------------------------------------- compilation and kernels
struct CompileResult {
  bool ok = false;
  std::string image;  // cubin
  std::string log;
};
// NVRTC: `source` with its headers (name -> text) for `arch` (e.g. "sm_90a"), with extra options.
CompileResult compile(const std::string& name, const std::string& source, const std::vector<std::string>& header_names,
                      const std::vector<std::string>& header_sources, const std::vector<std::string>& options);

}  // namespace kestrel::cuda
