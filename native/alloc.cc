// The caching allocator for CPU storage blocks (alloc.h). Why: on these VMs a fresh block's first
// touch costs a page fault per 4 KiB (a new 64 MiB buffer takes 25-200 ms to fault in; copying it
// takes 4 ms), and glibc maps every block >= 32 MiB afresh and unmaps it on free, so each training
// step re-faulted its activations. Like PyTorch's CUDA caching allocator (c10/cuda/
// CUDACachingAllocator.cpp) and jemalloc's size classes: a request is rounded up to a class (four
// per power of two above 256 bytes, at most 25% over), a freed block goes on its class's free list, and the next
// request of that class takes the most recently freed one. Blocks of 256 KiB and more come from
// mmap, the rest from aligned_alloc. Cached bytes above a limit go back to the OS, oldest first.
#include "alloc.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "kernel_api.h"

namespace kestrel {
namespace {

enum Source : uint8_t { kExact = 0, kHeapClass = 1, kMapped = 2 };
constexpr size_t kMmapMin = size_t(256) << 10;

struct Cached {
  char* data;
  size_t bytes;
  uint8_t source;
  uint64_t seq;  // free order, for evicting the oldest first
};

// "4G", "512M", "65536": bytes with an optional binary K/M/G suffix; `fallback` when unset or bad.
size_t env_bytes(const char* name, size_t fallback) {
  const char* s = std::getenv(name);
  if (!s || !*s) return fallback;
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (end == s || v < 0) return fallback;
  switch (*end) {
    case 'k': case 'K': v *= 1024.0; break;
    case 'm': case 'M': v *= 1024.0 * 1024.0; break;
    case 'g': case 'G': v *= 1024.0 * 1024.0 * 1024.0; break;
    default: break;
  }
  return size_t(v);
}

bool env_flag(const char* name, bool fallback) {
  const char* s = std::getenv(name);
  if (!s || !*s) return fallback;
  return !(std::strcmp(s, "0") == 0 || std::strcmp(s, "false") == 0 || std::strcmp(s, "off") == 0);
}

// max(1 GiB, a quarter of the machine's RAM): enough for a step's activations of the benchmark
// models without holding memory another process needs.
size_t default_limit() {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  size_t quarter = pages > 0 && page > 0 ? size_t(pages) * size_t(page) / 4 : 0;
  return std::max(size_t(1) << 30, quarter);
}

class Allocator {
 public:
  Allocator()
      : limit_(env_bytes("KESTREL_ALLOC_CACHE_MAX", default_limit())),
        enabled_(env_flag("KESTREL_ALLOC_CACHE", true)),
        poison_(env_flag("KESTREL_ALLOC_POISON", false)) {}

  Block alloc(size_t bytes, bool zero) {
    bool enabled, poison;
    Block b;
    bool fresh_zeroed = false;
    {
      std::lock_guard<std::mutex> lock(m_);
      enabled = enabled_;
      poison = poison_;
      if (enabled) {
        b.bytes = alloc_size_class(bytes);
        auto it = lists_.find(b.bytes);
        if (it != lists_.end() && !it->second.empty()) {
          const Cached c = it->second.back();  // the most recently freed: likeliest still in cache
          it->second.pop_back();
          b.data = c.data;
          b.source = c.source;
          cached_bytes_ -= b.bytes;
          cached_blocks_--;
          hits_++;
          in_use_ += b.bytes;
        }
      } else {
        b.bytes = std::max<size_t>(64, (bytes + 63) & ~size_t(63));
      }
    }
    if (!b.data) {
      b.source = !enabled ? kExact : b.bytes >= kMmapMin ? kMapped : kHeapClass;
      b.data = from_os(b.bytes, b.source);
      if (!b.data) {  // under pressure: give the cache back and try once more
        alloc_empty_cache();
        b.data = from_os(b.bytes, b.source);
      }
      if (!b.data) throw KernelError("out of memory allocating " + std::to_string(bytes) + " bytes (a " +
                                     std::to_string(b.bytes) + "-byte block; the cache was emptied first)");
      fresh_zeroed = b.source == kMapped;  // anonymous mappings arrive zeroed
      std::lock_guard<std::mutex> lock(m_);
      os_allocs_++;
      in_use_ += b.bytes;
    }
    if (zero && !fresh_zeroed) std::memset(b.data, 0, bytes);
    else if (!zero && poison) std::memset(b.data, 0xff, bytes);
    return b;
  }

  void free(const Block& b) {
    std::vector<Cached> victims;
    bool keep;
    {
      std::lock_guard<std::mutex> lock(m_);
      in_use_ -= b.bytes;
      keep = enabled_ && b.source != kExact && b.bytes <= limit_;
      if (keep) {
        lists_[b.bytes].push_back({b.data, b.bytes, b.source, seq_++});
        cached_bytes_ += b.bytes;
        cached_blocks_++;
        trim_locked(limit_, &victims);
      }
    }
    if (!keep) release({b.data, b.bytes, b.source, 0});
    release_all(victims);
  }

  size_t empty_cache() {
    std::vector<Cached> victims;
    size_t before;
    {
      std::lock_guard<std::mutex> lock(m_);
      before = cached_bytes_;
      trim_locked(0, &victims);
    }
    release_all(victims);
    return before;
  }

  void configure(size_t limit, bool enabled, bool poison) {
    std::vector<Cached> victims;
    {
      std::lock_guard<std::mutex> lock(m_);
      limit_ = limit;
      enabled_ = enabled;
      poison_ = poison;
      trim_locked(enabled ? limit : 0, &victims);
    }
    release_all(victims);
  }

  AllocStats stats() {
    std::lock_guard<std::mutex> lock(m_);
    return {in_use_, cached_bytes_, cached_blocks_, limit_, os_allocs_, os_frees_, hits_, enabled_, poison_};
  }

 private:
  static char* from_os(size_t bytes, uint8_t source) {
    if (source == kMapped) {
      void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      return p == MAP_FAILED ? nullptr : static_cast<char*>(p);
    }
    return static_cast<char*>(std::aligned_alloc(64, bytes));
  }

  // Pops the oldest cached blocks (into *victims, released outside the lock) until at most
  // `limit` bytes stay cached. The class lists are few (four per power of two in use), so a scan
  // for the oldest front is cheap next to the munmap it precedes.
  void trim_locked(size_t limit, std::vector<Cached>* victims) {
    while (cached_bytes_ > limit) {
      std::map<size_t, std::deque<Cached>>::iterator oldest = lists_.end();
      for (auto it = lists_.begin(); it != lists_.end(); ++it)
        if (!it->second.empty() && (oldest == lists_.end() || it->second.front().seq < oldest->second.front().seq))
          oldest = it;
      if (oldest == lists_.end()) break;
      victims->push_back(oldest->second.front());
      oldest->second.pop_front();
      cached_bytes_ -= oldest->first;
      cached_blocks_--;
    }
  }

  void release_all(const std::vector<Cached>& victims) {
    for (const Cached& c : victims) release(c);
  }

  void release(const Cached& c) {
    if (c.source == kMapped) munmap(c.data, c.bytes);
    else std::free(c.data);
    std::lock_guard<std::mutex> lock(m_);
    os_frees_++;
  }

  std::mutex m_;
  std::map<size_t, std::deque<Cached>> lists_;  // class bytes -> freed blocks, oldest first
  size_t limit_;
  bool enabled_, poison_;
  size_t in_use_ = 0, cached_bytes_ = 0, cached_blocks_ = 0;
  uint64_t os_allocs_ = 0, os_frees_ = 0, hits_ = 0, seq_ = 0;
};

// Never destroyed: storages may be freed by finalizers during exit, after static destructors.
Allocator& allocator() {
  static Allocator* a = new Allocator();
  return *a;
}

}  // namespace

size_t alloc_size_class(size_t bytes) {
  size_t n = std::max<size_t>(64, (bytes + 63) & ~size_t(63));
  if (n <= 256) return n;  // 64, 128, 192, 256
  // 2^e < n <= 2^(e+1): classes at 2^e + k * 2^(e-2), k = 1..4 (at most 25% above the request)
  int e = 63 - __builtin_clzll(uint64_t(n - 1));
  size_t step = size_t(1) << (e - 2);
  return (n + step - 1) & ~(step - 1);
}

Block block_alloc(size_t bytes, bool zero) { return allocator().alloc(bytes, zero); }
void block_free(const Block& b) { allocator().free(b); }
AllocStats alloc_stats() { return allocator().stats(); }
size_t alloc_empty_cache() { return allocator().empty_cache(); }
void alloc_configure(size_t limit_bytes, bool enabled, bool poison) { allocator().configure(limit_bytes, enabled, poison); }

}  // namespace kestrel
