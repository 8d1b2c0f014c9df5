// The emulator's scheduler: each block's threads run as fibers on the calling thread. A fiber
// runs until it reaches a barrier (__syncthreads, or a warp exchange) or returns; the last thread
// to arrive releases the barrier. A pass over the block that finds no runnable fiber while some
// have not finished is a deadlock (threads that diverged at a barrier), reported as an error.
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>

#include "emu.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace kestrel::cuda::emu {

Uint3 g_thread_idx{0, 0, 0}, g_block_idx{0, 0, 0};
Dim3 g_block_dim, g_grid_dim;
char* g_dynamic_smem = nullptr;

namespace {

std::map<std::string, KernelEntry>& registry() {
  static std::map<std::string, KernelEntry> r;
  return r;
}

constexpr size_t kStackBytes = 64 * 1024;
constexpr size_t kExchangeBytes = 64;

#if defined(__x86_64__)
// switch_context(save, next): saves the callee-saved registers and the SSE/x87 control words on
// the current stack, stores its pointer in *save, and resumes the stack `next` saved earlier.
extern "C" void kestrel_emu_switch(void** save, void* next);
asm(R"(
  .text
  .globl kestrel_emu_switch
  .type kestrel_emu_switch, @function
kestrel_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size kestrel_emu_switch, .-kestrel_emu_switch
  .section .note.GNU-stack,"",@progbits
  .text
)");
#endif

struct PendingCopy {
  void* dst;
  const void* src;
  unsigned bytes;
};

struct Fiber {
  std::unique_ptr<char[]> stack;
  std::vector<PendingCopy> copies;  // cp.async issued since the thread's last wait
#if defined(__x86_64__)
  void* sp = nullptr;
#else
  ucontext_t ctx;
#endif
  Uint3 tid{0, 0, 0};
  int warp = 0;
  bool done = false;
  int wait = 0;  // 0 running, 1 at a block barrier, 2 at a warp barrier
  unsigned gen = 0;
};

struct BlockState {
  std::vector<Fiber> fibers;
  std::vector<uint64_t> slots;  // one shuffle slot per thread
  std::vector<char> exchange;   // kExchangeBytes per thread for warp_exchange
  std::vector<unsigned> warp_gen, warp_arrived, warp_live;
  unsigned block_gen = 0, block_arrived = 0, live = 0;
  int current = -1;
  const KernelEntry* kernel = nullptr;
  const char* args = nullptr;
  std::string error;
#if defined(__x86_64__)
  void* sched_sp = nullptr;
#else
  ucontext_t sched_ctx;
#endif
};

BlockState g;

void yield_to_scheduler() {
  Fiber& f = g.fibers[size_t(g.current)];
#if defined(__x86_64__)
  kestrel_emu_switch(&f.sp, g.sched_sp);
#else
  swapcontext(&f.ctx, &g.sched_ctx);
#endif
}

void release_if_complete(int warp) {
  if (g.block_arrived > 0 && g.block_arrived == g.live) {
    g.block_arrived = 0;
    g.block_gen++;
  }
  if (g.warp_arrived[size_t(warp)] > 0 && g.warp_arrived[size_t(warp)] == g.warp_live[size_t(warp)]) {
    g.warp_arrived[size_t(warp)] = 0;
    g.warp_gen[size_t(warp)]++;
  }
}

void fiber_main() {
  g.kernel->thunk(g.kernel->fn, g.args);
  Fiber& f = g.fibers[size_t(g.current)];
  if (!f.copies.empty()) trap("a thread ended with cp.async copies in flight (no cp_async_wait_all after them)");
  f.done = true;
  g.live--;
  g.warp_live[size_t(f.warp)]--;
  release_if_complete(f.warp);
  yield_to_scheduler();  // never resumed
  std::abort();
}

void start_fiber(Fiber& f) {
  if (!f.stack) f.stack.reset(new char[kStackBytes]);
#if defined(__x86_64__)
  uintptr_t top = (reinterpret_cast<uintptr_t>(f.stack.get()) + kStackBytes) & ~uintptr_t(15);
  uint64_t* sp = reinterpret_cast<uint64_t*>(top);
  *--sp = 0;                                         // return address of fiber_main (never used)
  *--sp = reinterpret_cast<uint64_t>(&fiber_main);   // where the first switch "returns" to
  for (int i = 0; i < 6; i++) *--sp = 0;             // rbp rbx r12 r13 r14 r15
  uint32_t mxcsr = 0;
  uint16_t fpucw = 0;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpucw));
  *--sp = uint64_t(mxcsr) | (uint64_t(fpucw) << 32);
  f.sp = sp;
#else
  getcontext(&f.ctx);
  f.ctx.uc_stack.ss_sp = f.stack.get();
  f.ctx.uc_stack.ss_size = kStackBytes;
  f.ctx.uc_link = nullptr;
  makecontext(&f.ctx, &fiber_main, 0);
#endif
}

void resume(int i) {
  g.current = i;
  Fiber& f = g.fibers[size_t(i)];
  g_thread_idx = f.tid;
#if defined(__x86_64__)
  kestrel_emu_switch(&g.sched_sp, f.sp);
#else
  swapcontext(&g.sched_ctx, &f.ctx);
#endif
}

void run_block(unsigned nthreads) {
  unsigned nwarps = (nthreads + 31) / 32;
  if (g.fibers.size() < nthreads) g.fibers.resize(nthreads);
  g.slots.assign(nthreads, 0);
  g.exchange.assign(size_t(nthreads) * kExchangeBytes, 0);
  g.warp_gen.assign(nwarps, 0);
  g.warp_arrived.assign(nwarps, 0);
  g.warp_live.assign(nwarps, 0);
  g.block_gen = g.block_arrived = 0;
  g.live = nthreads;
  for (unsigned t = 0; t < nthreads; t++) {
    Fiber& f = g.fibers[t];
    f.tid = {t % g_block_dim.x, t / g_block_dim.x % g_block_dim.y, t / (g_block_dim.x * g_block_dim.y)};
    f.warp = int(t / 32);
    f.done = false;
    f.copies.clear();
    f.wait = 0;
    f.gen = 0;
    g.warp_live[t / 32]++;
    start_fiber(f);
  }
  unsigned finished = 0;
  while (finished < nthreads) {
    bool ran = false;
    finished = 0;
    for (unsigned t = 0; t < nthreads; t++) {
      Fiber& f = g.fibers[t];
      if (f.done) {
        finished++;
        continue;
      }
      if (f.wait == 1 && f.gen == g.block_gen) continue;
      if (f.wait == 2 && f.gen == g.warp_gen[size_t(f.warp)]) continue;
      f.wait = 0;
      resume(int(t));
      if (!g.error.empty()) return;
      ran = true;
      if (f.done) finished++;
    }
    if (!ran && finished < nthreads) {
      g.error = "deadlock: " + std::to_string(nthreads - finished) + " of " + std::to_string(nthreads) +
                " threads wait at a barrier that the others never reach (block " + std::to_string(g_block_idx.x) + "," +
                std::to_string(g_block_idx.y) + "," + std::to_string(g_block_idx.z) + ")";
      return;
    }
  }
}

}  // namespace

void register_kernel(KernelEntry e) {
  std::string name = e.name;
  registry()[name] = std::move(e);
}

const KernelEntry* find_kernel(const std::string& name) {
  auto it = registry().find(name);
  return it == registry().end() ? nullptr : &it->second;
}

void sync_block() {
  g.block_arrived++;
  if (g.block_arrived == g.live) {
    g.block_arrived = 0;
    g.block_gen++;
    return;
  }
  Fiber& f = g.fibers[size_t(g.current)];
  f.wait = 1;
  f.gen = g.block_gen;
  yield_to_scheduler();
}

void sync_warp() {
  Fiber& f = g.fibers[size_t(g.current)];
  size_t w = size_t(f.warp);
  g.warp_arrived[w]++;
  if (g.warp_arrived[w] == g.warp_live[w]) {
    g.warp_arrived[w] = 0;
    g.warp_gen[w]++;
    return;
  }
  f.wait = 2;
  f.gen = g.warp_gen[w];
  yield_to_scheduler();
}

int lane_id() { return g.current % 32; }

uint64_t* shuffle_slot(int lane) {
  size_t base = size_t(g.current) / 32 * 32;
  size_t i = base + size_t(lane & 31);
  if (i >= g.slots.size()) i = size_t(g.current);  // a lane past the block's end reads its own value, as on a GPU
  return &g.slots[i];
}

void warp_exchange(const void* mine, void* all, unsigned bytes) {
  if (bytes > kExchangeBytes) trap("warp_exchange of more than 64 bytes per lane");
  const size_t base = size_t(g.current) / 32 * 32;
  std::memcpy(&g.exchange[size_t(g.current) * kExchangeBytes], mine, bytes);
  sync_warp();
  for (size_t lane = 0; lane < 32; lane++) {
    const size_t i = base + lane < g.slots.size() ? base + lane : size_t(g.current);  // past the block's end: its own
    std::memcpy(static_cast<char*>(all) + lane * bytes, &g.exchange[i * kExchangeBytes], bytes);
  }
  sync_warp();
}

void async_copy(void* dst, const void* src, unsigned bytes) { g.fibers[size_t(g.current)].copies.push_back({dst, src, bytes}); }

void async_wait_all() {
  Fiber& f = g.fibers[size_t(g.current)];
  for (const PendingCopy& c : f.copies) std::memcpy(c.dst, c.src, c.bytes);
  f.copies.clear();
}

void trap(const char* why) {
  g.error = std::string("kernel trap: ") + why;
  Fiber& f = g.fibers[size_t(g.current)];
  f.done = true;
  yield_to_scheduler();
  std::abort();
}

void launch(const KernelEntry& k, Dim3 grid, Dim3 block, unsigned smem_bytes, const void* args, size_t bytes) {
  if (bytes != k.arg_bytes)
    throw std::runtime_error("emulated launch of " + k.name + ": " + std::to_string(bytes) + " argument bytes, the kernel takes " +
                             std::to_string(k.arg_bytes));
  unsigned nthreads = block.x * block.y * block.z;
  if (nthreads == 0 || nthreads > 1024) throw std::runtime_error("emulated launch of " + k.name + ": block of " + std::to_string(nthreads) + " threads");
  std::vector<char> smem(smem_bytes ? smem_bytes : 1);
  g_grid_dim = grid;
  g_block_dim = block;
  g.kernel = &k;
  g.args = static_cast<const char*>(args);
  g.error.clear();
  for (unsigned z = 0; z < grid.z; z++)
    for (unsigned y = 0; y < grid.y; y++)
      for (unsigned x = 0; x < grid.x; x++) {
        g_block_idx = {x, y, z};
        std::memset(smem.data(), 0xff, smem.size());  // uninitialised shared memory reads as NaN
        g_dynamic_smem = smem.data();
        run_block(nthreads);
        if (!g.error.empty()) throw std::runtime_error("emulated kernel " + k.name + ": " + g.error);
      }
}

}  // namespace kestrel::cuda::emu
