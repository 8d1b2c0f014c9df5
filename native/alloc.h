// The caching allocator behind CPU storage blocks (alloc.cc): sizes rounded up to classes, freed
// blocks kept on per-class free lists for the next request of that class, so a training or decode
// step's allocations stop reaching the OS (and re-faulting fresh pages) after the first step.
#pragma once
#include <cstddef>
#include <cstdint>

namespace kestrel {

// One block as the allocator handed it out; block_free() needs it back unchanged.
struct Block {
  char* data = nullptr;
  size_t bytes = 0;    // usable bytes: the size class (cached) or the request rounded to 64 (uncached)
  uint8_t source = 0;  // how it was obtained, so a block outlives a change of settings (alloc.cc)
};

// A block of at least `bytes` bytes, 64-byte aligned, zero-filled over its first `bytes` when
// `zero` (otherwise its contents are whatever the last user left). Throws KernelError when the
// OS refuses even after the cache was emptied.
Block block_alloc(size_t bytes, bool zero);
void block_free(const Block& b);

struct AllocStats {
  size_t in_use_bytes;   // bytes of blocks handed out and not yet freed (class sizes)
  size_t cached_bytes;   // bytes of freed blocks kept for reuse
  size_t cached_blocks;
  size_t limit_bytes;    // cached bytes beyond this go back to the OS
  uint64_t os_allocs;    // blocks obtained from the OS (malloc / mmap) since the process began
  uint64_t os_frees;     // blocks returned to it
  uint64_t cache_hits;   // requests served from a free list
  bool enabled, poison;
};
AllocStats alloc_stats();
// Returns every cached block to the OS; the bytes released.
size_t alloc_empty_cache();
// Settings (alloc.cc reads KESTREL_ALLOC_CACHE, KESTREL_ALLOC_CACHE_MAX and KESTREL_ALLOC_POISON
// first): the cache limit in bytes (trimmed at once), caching on or off, and poison (fill every
// non-zeroed block with 0xff bytes, NaN in every float type, to catch readers of fresh memory).
void alloc_configure(size_t limit_bytes, bool enabled, bool poison);
// The size class of a request (exposed for tests of the rounding).
size_t alloc_size_class(size_t bytes);

}  // namespace kestrel
