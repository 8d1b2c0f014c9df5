// Runtime pieces every kernel shares: argument decoding with bounds checks, the kernel
// registry, aligned storage blocks behind generation-checked handles, the thread pool,
// CPU feature detection and the 16-bit float conversions.
#include <atomic>
#include <condition_variable>
#include <cpuid.h>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "alloc.h"
#include "kernel_api.h"

namespace kestrel {

size_t dtype_size(int d) {
  switch (d) {
    case F64: case I64: return 8;
    case F32: case I32: return 4;
    case F16: case BF16: return 2;
    case I8: case U8: case BOOL: return 1;
  }
  throw KernelError("unknown dtype code " + std::to_string(d));
}

const char* dtype_name(int d) {
  static const char* names[] = {"float32", "float64", "float16", "bfloat16", "int32",
                                "int64",   "int8",    "uint8",   "bool"};
  return d >= 0 && d <= BOOL ? names[d] : "?";
}

std::string shape_str(const View& v) {
  std::string s = "[";
  for (int i = 0; i < v.ndim; i++) s += (i ? "," : "") + std::to_string(v.shape[i]);
  return s + "]";
}

// ---------------------------------------------------------------- arguments

double Args::next() {
  if (pos_ >= n_) throw KernelError("too few arguments (packer and kernel disagree)");
  return buf_[pos_++];
}

double Args::num() { return next(); }

int64_t Args::i64() {
  double d = next();
  if (d != std::floor(d) || std::fabs(d) > 9007199254740992.0)
    throw KernelError("expected an integer argument, got " + std::to_string(d));
  return int64_t(d);
}

bool Args::has_view() {
  if (pos_ >= n_) throw KernelError("too few arguments (packer and kernel disagree)");
  if (buf_[pos_] == 0) { pos_++; return false; }
  return true;
}

View Args::view() {
  View v;
  double handle = next();
  size_t bytes = 0;
  v.data = storage_lookup(handle, &bytes);
  v.dtype = int(i64());
  size_t es = dtype_size(v.dtype);
  v.offset = i64();
  v.ndim = int(i64());
  if (v.ndim < 0 || v.ndim > kMaxDims) throw KernelError("view has " + std::to_string(v.ndim) + " dims (max 8)");
  for (int i = 0; i < v.ndim; i++) v.shape[i] = i64();
  for (int i = 0; i < v.ndim; i++) v.stride[i] = i64();
  // Every addressable element must lie inside the block: [offset, offset + sum((n-1)*stride)].
  int64_t last = v.offset;
  bool empty = false;
  for (int i = 0; i < v.ndim; i++) {
    if (v.shape[i] < 0 || v.stride[i] < 0) throw KernelError("negative shape or stride in view " + shape_str(v));
    if (v.shape[i] == 0) empty = true;
    else last += (v.shape[i] - 1) * v.stride[i];
  }
  if (v.offset < 0) throw KernelError("negative view offset");
  if (!empty && size_t(last + 1) * es > bytes)
    throw KernelError("view " + shape_str(v) + " of " + dtype_name(v.dtype) + " at offset " +
                      std::to_string(v.offset) + " reaches past its storage of " + std::to_string(bytes) + " bytes");
  return v;
}

void Args::done() const {
  if (pos_ != n_) throw KernelError("unread arguments (packer and kernel disagree)");
}

// ---------------------------------------------------------------- registry

static std::vector<KernelEntry>& registry() {
  static std::vector<KernelEntry> r;
  return r;
}
KernelRegistration::KernelRegistration(const char* name, KernelFn fn) { registry().push_back({name, fn}); }
const KernelEntry* kernel_table(size_t* count) {
  *count = registry().size();
  return registry().data();
}

// ---------------------------------------------------------------- storage

namespace {
struct Slot {
  char* data = nullptr;
  size_t bytes = 0;  // what was asked for: views are checked against this, not the block's class
  Block block;
  uint32_t generation = 0;
  void (*release)(void*) = nullptr;  // adopted memory (storage_adopt): how to let it go
  void* context = nullptr;
};
constexpr uint32_t kSlotBits = 22;  // up to 4M live blocks
constexpr uint32_t kMaxSlots = 1u << kSlotBits;
std::mutex storage_mutex;
Slot* slots = nullptr;               // fixed array: lookups never race with a reallocation
std::vector<uint32_t> free_slots;
uint32_t slots_used = 1;             // slot 0 is never handed out, so handle 0 means "none"
size_t live_bytes = 0, live_blocks = 0;
}  // namespace

// Puts a block in a free slot and returns its handle (generation above the slot bits); when all
// slots are live, gives the block back (release, or the allocator) and throws.
static double fill_slot(char* data, size_t bytes, Block b, void (*release)(void*), void* context) {
  std::lock_guard<std::mutex> lock(storage_mutex);
  if (!slots) slots = static_cast<Slot*>(std::calloc(kMaxSlots, sizeof(Slot)));
  uint32_t slot;
  if (!free_slots.empty()) { slot = free_slots.back(); free_slots.pop_back(); }
  else if (slots_used < kMaxSlots) slot = slots_used++;
  else {
    if (release) release(context);
    else block_free(b);
    throw KernelError("too many live storage blocks");
  }
  Slot& s = slots[slot];
  s.data = data;
  s.bytes = bytes;
  s.block = b;
  s.release = release;
  s.context = context;
  s.generation = (s.generation + 1) & 0x7fffffff;
  live_bytes += bytes;
  live_blocks++;
  return double(s.generation) * double(kMaxSlots) + double(slot);
}

// Blocks come from the caching allocator (alloc.cc): reused, so contents are garbage unless zero.
double storage_alloc(size_t bytes, bool zero) {
  Block b = block_alloc(bytes, zero);
  return fill_slot(b.data, bytes, b, nullptr, nullptr);
}

double storage_adopt(char* data, size_t bytes, void (*release)(void*), void* context) { return fill_slot(data, bytes, Block(), release, context); }

static Slot& slot_of(double handle) {
  if (!slots || !(handle >= 1) || handle != std::floor(handle)) throw KernelError("invalid storage handle");
  uint64_t h = uint64_t(handle);
  uint32_t slot = uint32_t(h & (kMaxSlots - 1));
  uint32_t gen = uint32_t(h >> kSlotBits);
  if (slot == 0 || slot >= slots_used || slots[slot].generation != gen || !slots[slot].data)
    throw KernelError("storage handle is stale (its storage was disposed)");
  return slots[slot];
}

void storage_free(double handle) {
  Block b;
  void (*release)(void*) = nullptr;
  void* context = nullptr;
  {
    std::lock_guard<std::mutex> lock(storage_mutex);
    Slot& s = slot_of(handle);
    b = s.block;
    release = s.release, context = s.context;
    live_bytes -= s.bytes;
    live_blocks--;
    s.data = nullptr;
    s.bytes = 0;
    s.block = Block();
    s.release = nullptr, s.context = nullptr;
    free_slots.push_back(uint32_t(uint64_t(handle) & (kMaxSlots - 1)));
  }
  // outside the slot lock: either may munmap
  if (release) release(context);
  else block_free(b);
}

char* storage_lookup(double handle, size_t* bytes) {
  Slot& s = slot_of(handle);
  *bytes = s.bytes;
  return s.data;
}

size_t storage_live_bytes() { return live_bytes; }
size_t storage_live_blocks() { return live_blocks; }

// ---------------------------------------------------------------- thread pool

namespace {
std::vector<void (*)()>& warmup_hooks() {
  static std::vector<void (*)()> hooks;
  return hooks;
}

bool warmup_enabled() {
  static const bool on = [] {
    const char* env = std::getenv("KESTREL_WARMUP");
    return !(env && std::strcmp(env, "0") == 0);
  }();
  return on;
}

// Hooks register during static initialisation, before any thread starts, so reads need no lock.
void run_warmup_hooks() {
  if (!warmup_enabled()) return;
  for (auto hook : warmup_hooks()) {
    try {
      hook();
    } catch (...) {
      // a failed warm-up (out of memory) only means the first call pays instead
    }
  }
}

constexpr int kJoinSpins = 2048;  // about 10-40 us of pause

class ThreadPool {
 public:
  explicit ThreadPool(int n) { resize(n); }
  ~ThreadPool() { stop(); }

  int size() const { return int(workers_.size()) + 1; }

  void resize(int n) {
    stop();
    quit_ = false;
    try {
      for (int i = 1; i < n; i++) workers_.emplace_back([this, i] { loop(i); });
    } catch (...) {  // a thread the OS refused: join the ones started (never destroy a joinable thread)
      stop();
      throw;
    }
  }

  void run(int nchunks, const std::function<void(int)>& chunk) {
    {
      std::lock_guard<std::mutex> lock(m_);
      // A worker still inside work() from the last job claims chunks without this lock, so a
      // claim carries its job's number (next_ and limit_ pack job << 32 | index): a claim made
      // before this job opened is refused however many chunks this one has, and pending_ and the
      // job are set before next_ opens its chunks. With a bare index (and pending_ stored after
      // it), a late worker could run a chunk pending_ never counted, and the caller waited forever
      // (test/backend/thread_pool.test.ts hung in 3 of 8 runs on a 2-vCPU VM).
      job_ = &chunk;
      error_ = nullptr;
      pending_.store(nchunks);
      const uint64_t id = uint64_t(++jobs_) << 32;
      limit_.store(id | uint32_t(nchunks));
      next_.store(id);
      generation_++;
    }
    cv_.notify_all();
    // the caller works on chunks too: mark it, so a parallel_for nested in a chunk runs inline
    // instead of re-entering the pool and overwriting the job in flight
    bool was = in_worker;
    in_worker = true;
    work();
    in_worker = was;
    // the other threads' chunks end within microseconds of the caller's when the split is even:
    // spin for them before yielding (a sched_yield round trip cost 0.4-0.7 us a call, 2-4% of a
    // small decode GEMV on Zen 3)
    for (int spin = 0; pending_.load(std::memory_order_acquire) > 0; spin++)
      if (spin < kJoinSpins) __builtin_ia32_pause();
      else std::this_thread::yield();
    std::lock_guard<std::mutex> lock(m_);
    job_ = nullptr;
    if (error_) std::rethrow_exception(error_);
  }

 private:
  void work() {
    for (;;) {
      const uint64_t claim = next_.fetch_add(1), limit = limit_.load();
      if (claim >> 32 != limit >> 32 || uint32_t(claim) >= uint32_t(limit)) return;
      const int c = int(uint32_t(claim));
      try {
        (*job_)(c);
      } catch (...) {
        std::lock_guard<std::mutex> lock(err_m_);
        if (!error_) error_ = std::current_exception();
      }
      pending_.fetch_sub(1, std::memory_order_release);
    }
  }

  void loop(int) {
    in_worker = true;
    run_warmup_hooks();
    uint64_t seen = 0;
    for (;;) {
      // Spin briefly before sleeping: kernels come in quick succession during a forward pass.
      for (int spin = 0; spin < 20000 && generation_.load(std::memory_order_acquire) == seen && !quit_; spin++)
        __builtin_ia32_pause();
      std::unique_lock<std::mutex> lock(m_);
      cv_.wait(lock, [&] { return quit_ || generation_.load() != seen; });
      if (quit_) return;
      seen = generation_.load();
      if (!job_) continue;
      lock.unlock();
      work();
    }
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(m_);
      quit_ = true;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  std::vector<std::thread> workers_;
  std::mutex m_, err_m_;
  std::condition_variable cv_;
  const std::function<void(int)>* job_ = nullptr;
  uint32_t jobs_ = 0;                        // jobs run (the caller's count, under m_)
  std::atomic<uint64_t> next_{0}, limit_{0};  // job << 32 | the next chunk to claim; job << 32 | its chunk count
  std::atomic<int> pending_{0};
  std::atomic<uint64_t> generation_{0};
  std::exception_ptr error_;
  std::atomic<bool> quit_{false};

 public:
  static thread_local bool in_worker;
};
thread_local bool ThreadPool::in_worker = false;

int default_threads() {
  if (const char* env = std::getenv("KESTREL_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  unsigned hc = std::thread::hardware_concurrency();
  return hc ? int(hc) : 1;
}

ThreadPool& pool() {
  static ThreadPool p(default_threads());
  return p;
}
}  // namespace

ThreadWarmup::ThreadWarmup(void (*hook)()) { warmup_hooks().push_back(hook); }

void warm_pool() {
  pool();
  run_warmup_hooks();
}

int num_threads() { return pool().size(); }
void set_num_threads(int n) { pool().resize(n < 1 ? 1 : n); }

void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& f) {
  if (n <= 0) return;
  if (grain < 1) grain = 1;
  int threads = ThreadPool::in_worker ? 1 : pool().size();
  int64_t chunks = std::min<int64_t>(threads, (n + grain - 1) / grain);
  if (chunks <= 1) { f(0, n); return; }
  std::function<void(int)> chunk = [&](int c) {
    int64_t begin = n * c / chunks, end = n * (c + 1) / chunks;
    if (begin < end) f(begin, end);
  };
  pool().run(int(chunks), chunk);
}

// The thread pool's own check (test/backend/thread_pool.test.ts): out[i] += 1 for every i of a
// contiguous float32 out, split by parallel_for with `grain`, so that a chunk run twice or never
// shows in out. Many back-to-back calls (a CPU graph program) race the workers' hand-offs the way a
// decode step's hundreds of small kernels do; a lost hand-off hangs, which the test bounds in time.
KESTREL_KERNEL(parallel_count) {
  View out = args.view();
  const int64_t grain = args.i64();
  args.done();
  if (out.dtype != F32 || !out.contiguous()) fail("parallel_count", "out must be a contiguous float32 tensor");
  float* o = out.ptr<float>();
  parallel_for(out.numel(), grain, [o](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) o[i] += 1.0f;
  });
}

// ---------------------------------------------------------------- cpu features

const CpuFeatures& cpu_features() {
  static CpuFeatures f = [] {
    __builtin_cpu_init();
    CpuFeatures r;
    r.avx2 = __builtin_cpu_supports("avx2");
    r.fma = __builtin_cpu_supports("fma");
    r.avx512f = __builtin_cpu_supports("avx512f");
    r.f16c = __builtin_cpu_supports("f16c");
    r.avx512bw = r.avx512f && __builtin_cpu_supports("avx512bw");
    // CPUID leaf 7: subleaf 1 EAX bit 5 = AVX512_BF16; subleaf 0 EDX bit 22 = AMX-BF16, bit 24 =
    // AMX-TILE. AMX also needs the OS to manage the tile state: XCR0 bits 17 (TILECFG), 18 (TILEDATA).
    unsigned a = 0, b = 0, c = 0, d = 0;
    r.avx512bf16 = r.avx512bw && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5));
    bool amx = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (d & (1u << 22)) && (d & (1u << 24));
    if (amx && __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 27))) {  // OSXSAVE: xgetbv is allowed
      uint32_t lo, hi;
      __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
      amx = (lo & (3u << 17)) == (3u << 17);
    } else {
      amx = false;
    }
    r.amx_bf16 = amx && r.avx512bf16;  // the AMX driver packs with AVX-512 BW code
    // CPUID leaf 7: subleaf 0 ECX bit 11 = AVX512_VNNI; subleaf 1 EAX bit 4 = AVX-VNNI
    r.avx512vnni = r.avx512bw && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 11));
    r.avxvnni = r.avx2 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
    if (const char* env = std::getenv("KESTREL_SIMD")) {  // force a lower level for testing
      std::string s(env);
      if (s == "scalar") r.avx2 = r.fma = r.avx512f = false;
      if (s == "avx2") r.avx512f = false;
      if (!r.avx512f) r.avx512bw = r.avx512bf16 = r.amx_bf16 = r.avx512vnni = false;
      if (!r.avx2) r.avxvnni = false;
    }
    return r;
  }();
  return f;
}

// ---------------------------------------------------------------- 16-bit floats

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffff) > 0x7f800000) return uint16_t((u >> 16) | 0x40);  // quiet NaN, sign kept
  u += 0x7fff + ((u >> 16) & 1);                                        // round to nearest even
  return uint16_t(u >> 16);
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000;
  uint32_t a = u & 0x7fffffff;
  if (a > 0x7f800000) return uint16_t(sign | 0x7e00 | ((a >> 13) & 0x3ff));  // NaN
  if (a >= 0x477ff000) return uint16_t(sign | 0x7c00);                       // rounds to inf
  if (a < 0x38800000) {                                                      // subnormal or zero
    if (a < 0x33000000) return uint16_t(sign);                               // below half the smallest subnormal
    int e = int(a >> 23);
    uint32_t m = (a & 0x7fffff) | 0x800000;
    int shift = 126 - e;  // 14..24: value = m * 2^(e-150) = (m >> shift) * 2^-24
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return uint16_t(sign | q);
  }
  uint32_t r = a + 0xfff + ((a >> 13) & 1) - 0x38000000;  // rebias 127 -> 15, round to nearest even
  return uint16_t(sign | (r >> 13));
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff, u;
  if (e == 0x1f) u = sign | 0x7f800000 | (m << 13);
  else if (e != 0) u = sign | ((e + 112) << 23) | (m << 13);
  else if (m == 0) u = sign;
  else {  // subnormal: normalise
    int sh = 0;
    while (!(m & 0x400)) { m <<= 1; sh++; }
    u = sign | (uint32_t(113 - sh) << 23) | ((m & 0x3ff) << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace kestrel
