// Shared-memory collectives between the rank processes of one machine (src/dist's embedded
// transport). A group's segment holds a header (a 64-byte control line per rank: a sequence
// counter and the call it is in; pids; send/recv counters per ordered pair) and one slot per rank.
// A collective moves in pieces of at most one slot (16 MiB by default): a rank copies its piece
// into its slot, all meet at a phase (counter = generation, futex wake), each reads what it needs
// from the others' slots, and all meet again before the slots are reused. Slots persist across
// calls, so pages are faulted in once (a fresh 64 MiB buffer costs ~200 ms on these VMs).
// Reductions run in rank order 0..N-1 with float32 accumulation for half types, so every rank
// gets the same bits and a single-process reference reproduces them exactly.
//
// Shared regions (dist_share) skip the slots: a region is one more segment that every member maps
// whole, each owning a part, and a storage over this member's part is an ordinary tensor in JS.
// When every member's buffers of a collective lie in shared regions, each reads its peers' buffers
// in place: a reduce-scatter reads N blocks and writes one (the slot path first copies all N
// blocks in), an all-gather copies each peer's block straight into its output, and an all-reduce
// is a reduce-scatter into the output's own block followed by an all-gather of the others' blocks.
// On a 2-vCPU Xeon streaming 10-16 GB/s per thread those copies were most of the ~1 CPU s a ZeRO
// step spent in collectives.
// Buffers in private memory take the same single-copy path where Linux lets the members read each
// other's memory (cross-memory attach, process_vm_readv, as Open MPI's shared-memory transport
// does): a peer's private buffer is copied by the kernel straight into the output (reductions stage
// a chunk at a time), so an all-gather copies each byte once where the slots copy it in and out.
// Whether the group may is probed once, at its first collective; KESTREL_DIST_CMA=0 keeps the slots.
#include "dist_shm.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <tuple>
#include <utility>

#include "cast.h"
#include "kernel_api.h"

namespace kestrel {
namespace {

constexpr uint32_t kMagic = 0x4b445354;  // "KDST"
constexpr size_t kLine = 64;
constexpr size_t kPage = 4096;
constexpr int kMaxRanks = 256;
// src_share / dst_share codes besides a region index: the call needs the slots (this member's
// buffers do not allow a direct path), or the buffer is private memory at address src_at / dst_at.
constexpr int32_t kSlots = -1, kPrivate = -2;
// Reductions over private buffers stage a chunk of each peer's block at a time: 256 KiB per peer up
// to 4 ranks (in L2), 1 MiB in all beyond (4 KiB each at 256 ranks).
constexpr size_t kStageBytes = 1 << 20;
size_t stage_per_peer(size_t world) { return std::min<size_t>(256 << 10, std::max<size_t>(kStageBytes / world / 64 * 64, 64)); }
// What a member's probe word holds (probe_cma reads it in every peer's memory).
constexpr uint64_t kProbeMagic = 0x4b44535450524f42;  // "KDSTPROB"
const volatile uint64_t probe_word = kProbeMagic;

// A rank's control line: the phase counter others wait on, and what call it is in (checked
// at the first phase of every collective so that mismatched calls fail instead of corrupting).
struct Control {
  uint32_t counter;
  uint32_t op, dtype, reduce;
  uint64_t count;
  int32_t peer;
  int32_t src_share, dst_share;  // the shared region holding each buffer, or kSlots / kPrivate
  uint32_t cma_ok;               // probe_cma's verdict: 1 this member reads every peer's memory, 2 it cannot
  uint64_t src_at, dst_at;       // byte offsets of the buffers in this member's part of it, or their addresses
  uint64_t probe;                // the address of this member's probe_word
};
static_assert(sizeof(Control) <= kLine, "control line");

struct Meta {
  uint32_t magic, world;
  uint64_t slot_bytes;
};

using Clock = std::chrono::steady_clock;

// A region of dist_share: `per_rank` bytes per member, member r's at base + r * per_rank. The
// segment holds one reference and the storage over this member's part another, so the mapping
// outlives whichever of them goes last.
struct SharedRegion {
  char* base = nullptr;
  size_t per_rank = 0, total = 0;
  std::atomic<int> refs{1};
};

void unref(void* p) {
  auto* r = static_cast<SharedRegion*>(p);
  if (r->refs.fetch_sub(1) == 1) {
    munmap(r->base, r->total);
    delete r;
  }
}

size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

// Whether [a, a + an) and [b, b + bn) share a byte.
bool overlap(const char* a, size_t an, const char* b, size_t bn) { return a && b && a < b + bn && b < a + an; }

struct Segment {
  std::string name;
  char* base = nullptr;
  size_t total = 0, slot_bytes = 0, header = 0;
  int rank = 0, world = 0;
  std::vector<int> global;
  uint32_t gen = 0;                                // phases passed (same on every member)
  std::vector<uint32_t> sent_seq, recv_seq;        // pieces sent to / received from each peer
  std::vector<SharedRegion*> shares;               // dist_share's regions, in the order made (same on every member)
  std::atomic<uint64_t> shared_calls{0};           // collectives that took the in-place path
  std::atomic<uint64_t> cma_calls{0};              // ... the direct path, reading some private buffer with CMA
  enum class Cma { Unknown, Yes, No };
  std::atomic<Cma> cma{Cma::Unknown};  // whether every member may read its peers' memory (probe_cma, on a worker; dist_cma_state reads it on the JS thread)
  std::atomic<int> waiters{0};                     // JS waits for a call of this group now (dist_waiting)

  Meta* meta() const { return reinterpret_cast<Meta*>(base); }
  Control* control(int r) const { return reinterpret_cast<Control*>(base + kLine * (1 + r)); }
  int32_t* pid(int r) const { return reinterpret_cast<int32_t*>(base + kLine * (1 + world)) + r; }
  uint32_t* pair_counters() const { return reinterpret_cast<uint32_t*>(base + round_up(kLine * (1 + world) + 4 * world, kLine)); }
  uint32_t* sent(int from, int to) const { return pair_counters() + from * world + to; }
  uint32_t* acked(int from, int to) const { return pair_counters() + world * world + from * world + to; }
  char* slot(int r) const { return base + header + slot_bytes * size_t(r); }

  // Whether [p, p + bytes) touches any shared region, any member's part (a peer may read it in place).
  bool touches_shared(const char* p, size_t bytes) const {
    for (const auto& r : shares)
      if (overlap(p, bytes, r->base, r->total)) return true;
    return false;
  }
  // Where [p, p + bytes) lies in this member's part of a shared region: {region, offset}, or {-1, 0}.
  std::pair<int32_t, uint64_t> locate(const char* p, size_t bytes) const {
    for (size_t i = 0; p && i < shares.size(); i++) {
      const char* mine = shares[i]->base + shares[i]->per_rank * size_t(rank);
      if (p >= mine && bytes <= shares[i]->per_rank && size_t(p - mine) <= shares[i]->per_rank - bytes) return {int32_t(i), uint64_t(p - mine)};
    }
    return {-1, 0};
  }
  // Member r's buffer of `bytes` at `at` of its part of region `share` (as r published it: checked).
  char* peer(int r, int32_t share, uint64_t at, size_t bytes) const {
    if (share < 0 || size_t(share) >= shares.size() || bytes > shares[size_t(share)]->per_rank || at > shares[size_t(share)]->per_rank - bytes)
      throw KernelError("dist: rank " + std::to_string(global[size_t(r)]) + " named a buffer outside the shared regions (region " +
                        std::to_string(share) + ", offset " + std::to_string(at) + ", " + std::to_string(bytes) + " bytes)");
    return shares[size_t(share)]->base + shares[size_t(share)]->per_rank * size_t(r) + at;
  }
};

size_t header_bytes(int world) {
  return round_up(round_up(kLine * (1 + world) + 4 * world, kLine) + 8 * size_t(world) * world, kPage);
}

// Never destroyed: a collective still waiting on a libuv thread when the process exits (a rank's
// process.exit) must not read segments that exit's static destructors freed.
std::mutex& registry_mu = *new std::mutex;
std::vector<std::unique_ptr<Segment>>& registry() {
  static auto* r = new std::vector<std::unique_ptr<Segment>>;
  return *r;
}

Segment& segment(int id) {
  std::lock_guard<std::mutex> lock(registry_mu);
  auto& r = registry();
  if (id < 0 || size_t(id) >= r.size() || !r[size_t(id)]) throw KernelError("dist: unknown or closed segment id " + std::to_string(id));
  return *r[size_t(id)];
}

uint32_t load(const uint32_t* p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
bool reached(uint32_t v, uint32_t target) { return int32_t(v - target) >= 0; }

void post(uint32_t* p, uint32_t v) {
  __atomic_store_n(p, v, __ATOMIC_RELEASE);
  syscall(SYS_futex, p, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0);
}

std::string who(const Segment& s, int r) { return "rank " + std::to_string(s.global[size_t(r)]); }

// How long a wait yields the core before it sleeps: KESTREL_DIST_SPIN_US microseconds (default 50;
// at most 10 ms), read on the JS thread by the first dist_open (spin_ns); while JS waits for the
// group's calls (dist_waiting), kWaitedSpinNs or that if longer. 0 sleeps at once, always.
int64_t spin_ns() {
  static const int64_t ns = [] {
    const char* e = std::getenv("KESTREL_DIST_SPIN_US");
    if (!e || !*e) return int64_t(50'000);
    char* end = nullptr;
    const long long us = std::strtoll(e, &end, 10);
    if (*end || us < 0 || us > 10'000) throw KernelError(std::string("KESTREL_DIST_SPIN_US=") + e + ": microseconds, an integer from 0 to 10000");
    return int64_t(us) * 1000;
  }();
  return ns;
}

// Whether this process offers cross-memory attach: KESTREL_DIST_CMA, 1 (default) or 0, read on the
// JS thread by the first dist_open. The group uses it only when every member does (probe_cma).
bool cma_wanted() {
  static const bool on = [] {
    const char* e = std::getenv("KESTREL_DIST_CMA");
    if (!e || !*e || std::strcmp(e, "1") == 0) return true;
    if (std::strcmp(e, "0") == 0) return false;
    throw KernelError(std::string("KESTREL_DIST_CMA=") + e + ": 1 (read peers' private buffers with process_vm_readv) or 0 (copy through the slots)");
  }();
  return on;
}

// Copies `bytes` at address `addr` of member r's memory into `to` (process_vm_readv may stop short).
void cma_read(const Segment& s, int r, uint64_t addr, char* to, size_t bytes, const DistCall& c) {
  const pid_t pid = __atomic_load_n(s.pid(r), __ATOMIC_ACQUIRE);
  while (bytes > 0) {
    iovec local{to, bytes}, remote{reinterpret_cast<void*>(addr), bytes};
    const ssize_t got = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    if (got <= 0) {
      const int e = errno;  // before the message's allocations
      throw KernelError("dist " + c.name + ": reading " + who(s, r) + "'s buffer (process_vm_readv of " + std::to_string(bytes) +
                        " bytes): " + (got < 0 ? std::strerror(e) : "nothing read"));
    }
    to += got, addr += uint64_t(got), bytes -= size_t(got);
  }
}

constexpr int64_t kWaitedSpinNs = 2'000'000;

// Waits until *p reaches target: a short spin, then yields of the core (a peer some microseconds
// behind is met without a sleep and its wake-up, as MPI's progress loops do; a yield lets an
// oversubscribed core run the peer), then futex sleeps of 20 ms between which the deadline and
// the peer's process are checked, so a dead or hung rank is an error that names it. The yields go
// on for spin_ns() while this rank's JS thread may be computing (a bucket's all-reduce beside
// backward must not take its core), and for 2 ms while it waits for the group: on a VM a futex
// wake-up costs 0.1-0.5 ms where the sleeper's vCPU halted, most of a 1 MB call.
void wait_for(const Segment& s, const uint32_t* p, uint32_t target, int r, const DistCall& c, Clock::time_point deadline) {
  for (int i = 0; i < 256; i++) {
    if (reached(load(p), target)) return;
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  }
  if (const int64_t ns = spin_ns()) {
    const auto start = Clock::now();
    for (;;) {
      if (reached(load(p), target)) return;
      sched_yield();
      const auto now = Clock::now();
      const int64_t budget = s.waiters.load(std::memory_order_relaxed) > 0 ? std::max(ns, kWaitedSpinNs) : ns;
      if (now >= deadline || now - start >= std::chrono::nanoseconds(budget)) break;
    }
  }
  for (;;) {
    uint32_t v = load(p);
    if (reached(v, target)) return;
    timespec ts{0, 20 * 1000 * 1000};
    syscall(SYS_futex, p, FUTEX_WAIT, v, &ts, nullptr, 0);
    if (reached(load(p), target)) return;
    int32_t peer_pid = __atomic_load_n(s.pid(r), __ATOMIC_ACQUIRE);
    if (peer_pid > 0 && kill(peer_pid, 0) != 0 && errno == ESRCH)
      throw KernelError("dist " + c.name + ": " + who(s, r) + " (pid " + std::to_string(peer_pid) + ") exited while this rank waited for it");
    if (Clock::now() > deadline)
      throw KernelError("dist " + c.name + ": " + who(s, r) + " did not arrive within " + std::to_string(int64_t(c.timeout_ms)) +
                        " ms (a dead, hung or diverged peer)");
  }
}

const char* op_name(uint32_t op) {
  static const char* names[] = {"allReduce", "broadcast", "allGather", "reduceScatter", "allToAll", "send", "recv", "barrier"};
  return op < 8 ? names[op] : "?";
}

// Whether this member's buffers allow a direct path (in place or CMA): no byte this member writes
// is one a peer reads meanwhile. Whether the peers can read them at all is run_direct's question.
bool may_share(const Segment& s, const DistCall& c) {
  const DistBytes b = dist_call_bytes(c.op, c.count, c.dtype, size_t(s.world));
  const bool apart = !overlap(c.dst, b.dst, c.src, b.src);
  switch (c.op) {
    case DistOp::AllReduce:  // in place, or output and input apart
      return c.dst == c.src || apart;
    case DistOp::ReduceScatter:
    case DistOp::AllToAll:
      return apart;
    case DistOp::AllGather:  // peers read the input while the output is written: apart, or the input is the output's own block
      return c.src == c.dst + s.rank * b.src || apart;
    case DistOp::Broadcast:  // only the root's input is read
      return c.peer != s.rank || c.dst == c.src || apart;
    default: return false;
  }
}

// Where this member's buffer [p, p + bytes) is: {region, offset} in a shared region, else {kPrivate, address}.
std::pair<int32_t, uint64_t> publish(const Segment& s, const char* p, size_t bytes) {
  auto place = s.locate(p, bytes);
  return place.first >= 0 ? place : std::pair<int32_t, uint64_t>{kPrivate, uint64_t(reinterpret_cast<uintptr_t>(p))};
}

// All members meet. The first phase of a call also checks that every member is in the same call.
void phase(Segment& s, const DistCall& c, Clock::time_point deadline, bool first) {
  uint32_t target = ++s.gen;
  Control* me = s.control(s.rank);
  if (first) {
    me->op = uint32_t(c.op), me->dtype = uint32_t(c.dtype), me->reduce = uint32_t(c.reduce);
    me->count = c.count, me->peer = c.peer;
    const DistBytes bytes = dist_call_bytes(c.op, c.count, c.dtype, size_t(s.world));
    std::tie(me->src_share, me->src_at) = publish(s, c.src, bytes.src);
    std::tie(me->dst_share, me->dst_at) = publish(s, c.dst, bytes.dst);
    if (!may_share(s, c)) me->src_share = kSlots;  // this member's verdict, for run_direct
  }
  post(&me->counter, target);
  for (int r = 0; r < s.world; r++)
    if (r != s.rank) wait_for(s, &s.control(r)->counter, target, r, c, deadline);
  if (!first) return;
  for (int r = 0; r < s.world; r++) {
    const Control* o = s.control(r);
    if (o->op != me->op || o->dtype != me->dtype || o->count != me->count || o->reduce != me->reduce || o->peer != me->peer)
      throw KernelError("dist " + c.name + ": ranks disagree on the call: " + who(s, s.rank) + " is in " + op_name(me->op) + " of " +
                        std::to_string(me->count) + " elements (dtype " + std::to_string(me->dtype) + ", op " + std::to_string(me->reduce) +
                        ", peer " + std::to_string(me->peer) + "), " + who(s, r) + " in " + op_name(o->op) + " of " + std::to_string(o->count) +
                        " (dtype " + std::to_string(o->dtype) + ", op " + std::to_string(o->reduce) + ", peer " + std::to_string(o->peer) + ")");
  }
}

// ---------------------------------------------------------------- reductions

template <class T> struct Acc { using type = T; static T in(T v) { return v; } static T out(T v) { return v; } };
template <> struct Acc<bf16_t> {
  using type = float;
  static float in(bf16_t v) { return bf16_to_f32(v.bits); }
  static bf16_t out(float v) { return bf16_t{f32_to_bf16(v)}; }
};
template <> struct Acc<int32_t> {  // int64 sums wrap like int32 arithmetic without signed overflow
  using type = int64_t;
  static int64_t in(int32_t v) { return v; }
  static int32_t out(int64_t v) { return int32_t(uint32_t(uint64_t(v))); }
};
template <> struct Acc<f16_t> {
  using type = float;
  static float in(f16_t v) { return f16_to_f32(v.bits); }
  static f16_t out(float v) { return f16_t{f32_to_f16(v)}; }
};

// dst[i] = reduce over r = 0..N-1 (in that order) of src(r)[i], for n elements; src(r) returns a T*.
template <class T, class Src>
void reduce_into(T* dst, size_t n, int world, DistReduce op, Src src) {
  using A = typename Acc<T>::type;
  constexpr size_t kBlock = 2048;
  A acc[kBlock];
  for (size_t b = 0; b < n; b += kBlock) {
    size_t m = std::min(kBlock, n - b);
    const T* s0 = src(0) + b;
    for (size_t i = 0; i < m; i++) acc[i] = Acc<T>::in(s0[i]);
    for (int r = 1; r < world; r++) {
      const T* sr = src(r) + b;
      if (op == DistReduce::Max) for (size_t i = 0; i < m; i++) { A v = Acc<T>::in(sr[i]); acc[i] = v > acc[i] ? v : acc[i]; }
      else if (op == DistReduce::Min) for (size_t i = 0; i < m; i++) { A v = Acc<T>::in(sr[i]); acc[i] = v < acc[i] ? v : acc[i]; }
      else for (size_t i = 0; i < m; i++) acc[i] = A(acc[i] + Acc<T>::in(sr[i]));
    }
    if (op == DistReduce::Avg) for (size_t i = 0; i < m; i++) acc[i] = A(acc[i] / A(world));
    for (size_t i = 0; i < m; i++) dst[b + i] = Acc<T>::out(acc[i]);
  }
}

// Reduces n elements of every member's part (part(r): a byte pointer) into dst.
template <class Part>
void reduce_parts(const Segment& s, DistCall const& c, char* dst, size_t n, Part part) {
  auto run = [&](auto* typed_dst) {
    using T = std::remove_pointer_t<decltype(typed_dst)>;
    reduce_into<T>(typed_dst, n, s.world, c.reduce, [&](int r) { return reinterpret_cast<const T*>(part(r)); });
  };
  switch (c.dtype) {
    case DistDType::F32: run(reinterpret_cast<float*>(dst)); break;
    case DistDType::BF16: run(reinterpret_cast<bf16_t*>(dst)); break;
    case DistDType::F16: run(reinterpret_cast<f16_t*>(dst)); break;
    case DistDType::I32: run(reinterpret_cast<int32_t*>(dst)); break;
    case DistDType::I64: run(reinterpret_cast<int64_t*>(dst)); break;
    case DistDType::F64: run(reinterpret_cast<double*>(dst)); break;
    case DistDType::U8: run(reinterpret_cast<uint8_t*>(dst)); break;
  }
}

// ---------------------------------------------------------------- collectives

struct Pieces {
  size_t piece, n;  // elements per piece, total elements (per rank)
  template <class F> void each(F f) const {
    for (size_t off = 0; off < n; off += piece) f(off, std::min(piece, n - off));
  }
};

// Whether every member can read its peers' private memory with process_vm_readv (denied by some
// seccomp profiles, by Yama's ptrace_scope 2-3, or by KESTREL_DIST_CMA=0 on any member): each reads
// every peer's probe word, then all meet and agree. Once per group, inside its first collective.
void probe_cma(Segment& s, const DistCall& c, Clock::time_point deadline) {
  bool ok = cma_wanted();
  for (int r = 0; ok && r < s.world; r++) {
    if (r == s.rank) continue;
    uint64_t v = 0;
    iovec local{&v, sizeof v}, remote{reinterpret_cast<void*>(s.control(r)->probe), sizeof v};
    ok = process_vm_readv(__atomic_load_n(s.pid(r), __ATOMIC_ACQUIRE), &local, 1, &remote, 1, 0) == ssize_t(sizeof v) && v == kProbeMagic;
  }
  s.control(s.rank)->cma_ok = ok ? 1 : 2;
  phase(s, c, deadline, false);
  bool all = true;
  for (int r = 0; r < s.world; r++) all = all && s.control(r)->cma_ok == 1;
  s.cma = all ? Segment::Cma::Yes : Segment::Cma::No;
}

// A reduction's staging, stage_per_peer bytes for each member (thread-local: one call runs at a time per thread).
char* stage_buffer(size_t bytes) {
  thread_local std::vector<char> buf;
  if (buf.size() < bytes) buf.resize(bytes);
  return buf.data();
}

// The direct path (see the file comment), after the first phase: every member reads the buffers
// of its peers that it needs, mapped ones in place and private ones with CMA. False when some
// member's buffers do not allow it (every member sees the same control lines, so all decide alike).
bool run_direct(Segment& s, const DistCall& c, Clock::time_point deadline, bool own_copied) {
  const size_t eb = dist_dtype_bytes(c.dtype), N = size_t(s.world), me = size_t(s.rank), n = c.count;
  const DistBytes bytes = dist_call_bytes(c.op, n, c.dtype, N);
  // whose buffers the peers read: every input (a broadcast's root's alone) and an all-reduce's outputs
  auto src_read = [&](size_t r) { return c.op != DistOp::Broadcast || int(r) == c.peer; };
  const bool dst_read = c.op == DistOp::AllReduce;
  bool cma = false;
  for (size_t r = 0; r < N; r++) {
    const Control* o = s.control(int(r));
    if (o->src_share == kSlots) return false;
    for (const int32_t share : {src_read(r) ? o->src_share : 0, dst_read ? o->dst_share : 0}) {
      if (share != kPrivate) continue;
      if (s.cma != Segment::Cma::Yes) return false;
      cma = true;
    }
  }
  // each member's input and output where this member maps them (a shared region), else null: found once
  const char* mapped_src[kMaxRanks];
  const char* mapped_dst[kMaxRanks];
  for (size_t r = 0; r < N; r++) {
    const Control* o = s.control(int(r));
    mapped_src[r] = o->src_share >= 0 ? s.peer(int(r), o->src_share, o->src_at, bytes.src) : nullptr;
    mapped_dst[r] = dst_read && o->dst_share >= 0 ? s.peer(int(r), o->dst_share, o->dst_at, bytes.dst) : nullptr;
  }
  // the bytes [off, off + len) of member r's input (or output) into `to`
  auto read = [&](size_t r, bool out, size_t off, char* to, size_t len) {
    // a mapped buffer may be the very bytes to write (an all-gather into group.whole(shard)): nothing to copy
    if (const char* p = out ? mapped_dst[r] : mapped_src[r]) {
      if (p + off != to) std::memcpy(to, p + off, len);
      return;
    }
    const Control* o = s.control(int(r));
    cma_read(s, int(r), (out ? o->dst_at : o->src_at) + off, to, len, c);
  };
  // out = the reduction of every member's m elements of input at byte `from`: mapped inputs read
  // in place, private ones staged a chunk at a time
  auto reduce_block = [&](char* out, size_t from, size_t m) {
    const size_t per = stage_per_peer(N), chunk = per / eb;
    char* stage = cma ? stage_buffer(N * per) : nullptr;
    for (size_t o = 0; o < m; o += chunk) {
      const size_t k = std::min(chunk, m - o), at = from + o * eb;
      const char* part[kMaxRanks];
      for (size_t r = 0; r < N; r++) {
        const char* p = r == me ? c.src : mapped_src[r];
        if (!p) read(r, false, at, stage + r * per, k * eb);
        part[r] = p ? p + at : stage + r * per;
      }
      reduce_parts(s, c, out + o * eb, k, [&](int r) { return part[r]; });
    }
  };
  switch (c.op) {
    case DistOp::ReduceScatter:
      reduce_block(c.dst, me * n * eb, n);
      break;
    case DistOp::AllGather:
      for (size_t r = 0; r < N; r++) {
        char* to = c.dst + r * n * eb;
        if (r != me) read(r, false, 0, to, n * eb);
        else if (to != c.src && !own_copied) std::memcpy(to, c.src, n * eb);
      }
      break;
    case DistOp::AllToAll:
      for (size_t r = 0; r < N; r++) {
        char* to = c.dst + r * n * eb;
        if (r != me) read(r, false, me * n * eb, to, n * eb);
        else std::memcpy(to, c.src + me * n * eb, n * eb);
      }
      break;
    case DistOp::Broadcast:
      if (int(me) != c.peer) read(size_t(c.peer), false, 0, c.dst, n * eb);
      else if (c.dst != c.src) std::memcpy(c.dst, c.src, n * eb);
      break;
    case DistOp::AllReduce: {
      // member r reduces elements [r n / N, (r + 1) n / N) into its own output, then all copy the others' blocks
      auto lo = [&](size_t r) { return r * n / N; };
      reduce_block(c.dst + lo(me) * eb, lo(me) * eb, lo(me + 1) - lo(me));
      phase(s, c, deadline, false);
      for (size_t r = 0; r < N; r++)
        if (r != me) read(r, true, lo(r) * eb, c.dst + lo(r) * eb, (lo(r + 1) - lo(r)) * eb);
      break;
    }
    default: return false;
  }
  phase(s, c, deadline, false);  // every member has read the others' buffers: they may be written again
  (cma ? s.cma_calls : s.shared_calls)++;
  return true;
}

void run_collective(Segment& s, const DistCall& c, Clock::time_point deadline) {
  const size_t eb = dist_dtype_bytes(c.dtype), N = size_t(s.world), me = size_t(s.rank);
  const size_t n = c.count;
  bool first = true;
  auto meet = [&] { phase(s, c, deadline, first); first = false; };
  if (c.op == DistOp::Barrier || n == 0) {  // two phases, so that the call check of a next call cannot race this one
    meet();
    meet();
    return;
  }
  // a group that may read its peers' buffers (shared regions, or CMA unless the probe said no) meets
  // once first, so that every member knows whether all buffers allow the direct path
  const bool direct = c.op == DistOp::AllReduce || c.op == DistOp::ReduceScatter || c.op == DistOp::AllGather ||
                      c.op == DistOp::Broadcast || c.op == DistOp::AllToAll;
  if (direct && (s.cma != Segment::Cma::No || !s.shares.empty())) {
    // an all-gather's own block needs no peer: copied while the others arrive, into an output no
    // peer can read (outside every shared region; on the slot path the same bytes come again)
    const bool readable = s.locate(c.src, n * eb).first >= 0 || s.cma == Segment::Cma::Yes;
    const bool own_early = c.op == DistOp::AllGather && readable && !overlap(c.dst, N * n * eb, c.src, n * eb) &&
                           !s.touches_shared(c.dst, N * n * eb);
    if (own_early) std::memcpy(c.dst + me * n * eb, c.src, n * eb);
    meet();
    if (s.cma == Segment::Cma::Unknown) probe_cma(s, c, deadline);
    if (run_direct(s, c, deadline, own_early)) return;
  }
  const bool packed = c.op == DistOp::ReduceScatter || c.op == DistOp::AllToAll;  // each rank sends N blocks
  Pieces p{std::max<size_t>(1, s.slot_bytes / eb / (packed ? N : 1)), n};
  p.each([&](size_t off, size_t m) {
    const size_t bytes = m * eb;
    switch (c.op) {
      case DistOp::AllReduce:
        std::memcpy(s.slot(s.rank), c.src + off * eb, bytes);
        meet();
        reduce_parts(s, c, c.dst + off * eb, m, [&](int r) { return s.slot(r); });
        break;
      case DistOp::Broadcast:
        if (int(me) == c.peer) std::memcpy(s.slot(s.rank), c.src + off * eb, bytes);
        meet();
        if (int(me) != c.peer || c.dst != c.src) std::memcpy(c.dst + off * eb, s.slot(c.peer), bytes);
        break;
      case DistOp::AllGather:
        std::memcpy(s.slot(s.rank), c.src + off * eb, bytes);
        meet();
        for (size_t r = 0; r < N; r++) std::memcpy(c.dst + (r * n + off) * eb, s.slot(int(r)), bytes);
        break;
      case DistOp::ReduceScatter:
      case DistOp::AllToAll:
        for (size_t r = 0; r < N; r++) std::memcpy(s.slot(s.rank) + r * bytes, c.src + (r * n + off) * eb, bytes);
        meet();
        if (c.op == DistOp::ReduceScatter) reduce_parts(s, c, c.dst + off * eb, m, [&](int r) { return s.slot(r) + me * bytes; });
        else for (size_t r = 0; r < N; r++) std::memcpy(c.dst + (r * n + off) * eb, s.slot(int(r)) + me * bytes, bytes);
        break;
      default: throw KernelError("dist: not a collective");
    }
    meet();  // every member has read the slots: they may be reused
  });
}

// send/recv: the sender's slot carries one piece at a time; `sent` says a piece is there,
// `acked` that the receiver has copied it out (so the sender's slot is free again).
void run_point_to_point(Segment& s, const DistCall& c, Clock::time_point deadline) {
  const size_t eb = dist_dtype_bytes(c.dtype);
  if (c.peer == s.rank) throw KernelError("dist " + c.name + ": peer is this rank (" + who(s, s.rank) + ")");
  Pieces p{s.slot_bytes / eb, c.count};
  p.each([&](size_t off, size_t m) {
    if (c.op == DistOp::Send) {
      uint32_t seq = ++s.sent_seq[size_t(c.peer)];
      std::memcpy(s.slot(s.rank), c.src + off * eb, m * eb);
      post(s.sent(s.rank, c.peer), seq);
      wait_for(s, s.acked(s.rank, c.peer), seq, c.peer, c, deadline);
    } else {
      uint32_t seq = ++s.recv_seq[size_t(c.peer)];
      wait_for(s, s.sent(c.peer, s.rank), seq, c.peer, c, deadline);
      std::memcpy(c.dst + off * eb, s.slot(c.peer), m * eb);
      post(s.acked(c.peer, s.rank), seq);
    }
  });
}

// Opens (creating when absent) the shm object `name` of `total` bytes and maps it whole; every
// member passes the same size, and a mismatch is an error naming `agree` (what they disagree on).
void* map_shared(const std::string& name, size_t total, const char* fn, const char* what, const char* agree) {
  int fd = shm_open(name.c_str(), O_CREAT | O_RDWR, 0600);
  if (fd < 0) throw KernelError(std::string(fn) + ": shm_open('" + name + "'): " + std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || (st.st_size != 0 && size_t(st.st_size) != total) || (st.st_size == 0 && ftruncate(fd, off_t(total)) != 0)) {
    int e = errno;
    close(fd);
    throw KernelError(std::string(fn) + ": " + what + " '" + name + "' is " + std::to_string(st.st_size) + " bytes, this rank needs " +
                      std::to_string(total) + " (ranks disagree on " + agree + "?)" + (e ? std::string(": ") + std::strerror(e) : ""));
  }
  void* p = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) throw KernelError(std::string(fn) + ": mmap of " + std::to_string(total) + " bytes: " + std::strerror(errno));
  return p;
}

}  // namespace

size_t dist_dtype_bytes(DistDType d) {
  switch (d) {
    case DistDType::F32: case DistDType::I32: return 4;
    case DistDType::BF16: case DistDType::F16: return 2;
    case DistDType::I64: case DistDType::F64: return 8;
    case DistDType::U8: return 1;
  }
  throw KernelError("dist: unknown dtype code " + std::to_string(int(d)));
}

DistBytes dist_call_bytes(DistOp op, size_t count, DistDType dtype, size_t world) {
  const size_t per = count * dist_dtype_bytes(dtype), all = per * world;
  switch (op) {
    case DistOp::AllReduce: case DistOp::Broadcast: return {per, per};
    case DistOp::AllGather: return {per, all};
    case DistOp::ReduceScatter: return {all, per};
    case DistOp::AllToAll: return {all, all};
    case DistOp::Send: return {per, 0};
    case DistOp::Recv: return {0, per};
    case DistOp::Barrier: break;
  }
  return {0, 0};
}

int dist_open(const std::string& name, int local_rank, const std::vector<int>& global_ranks, size_t slot_bytes) {
  const int world = int(global_ranks.size());
  if (world < 1 || world > kMaxRanks) throw KernelError("dist open: group of " + std::to_string(world) + " ranks (1.." + std::to_string(kMaxRanks) + ")");
  if (local_rank < 0 || local_rank >= world) throw KernelError("dist open: rank " + std::to_string(local_rank) + " outside a group of " + std::to_string(world));
  if (slot_bytes < kPage || slot_bytes > (size_t(1) << 30) || slot_bytes % kPage)
    throw KernelError("dist open: slot size " + std::to_string(slot_bytes) + " must be a multiple of 4096 in [4096, 1 GiB]");
  if (name.size() < 2 || name[0] != '/' || name.find('/', 1) != std::string::npos || name.size() > 200)
    throw KernelError("dist open: bad segment name '" + name + "' (one '/' then up to 200 characters)");
  spin_ns();  // KESTREL_DIST_SPIN_US and KESTREL_DIST_CMA are read here, on the JS thread (a bad value is an error now)
  // Yama's ptrace_scope 1 lets only ancestors read a process's memory, and ranks are siblings: let
  // any process of this user (as Open MPI does; EINVAL where Yama is absent, and the probe decides)
  if (cma_wanted() && world > 1) prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
  auto s = std::make_unique<Segment>();
  s->name = name, s->rank = local_rank, s->world = world, s->global = global_ranks, s->slot_bytes = slot_bytes;
  s->header = header_bytes(world);
  s->total = s->header + slot_bytes * size_t(world);
  s->sent_seq.assign(size_t(world), 0), s->recv_seq.assign(size_t(world), 0);
  void* p = map_shared(name, s->total, "dist open", "segment", "the group or slot size");
  s->base = static_cast<char*>(p);
  Meta* m = s->meta();
  m->magic = kMagic, m->world = uint32_t(world), m->slot_bytes = slot_bytes;  // every member writes the same values
  s->control(local_rank)->probe = uint64_t(reinterpret_cast<uintptr_t>(&probe_word));
  __atomic_store_n(s->pid(local_rank), int32_t(getpid()), __ATOMIC_RELEASE);
  std::lock_guard<std::mutex> lock(registry_mu);
  registry().push_back(std::move(s));
  return int(registry().size() - 1);
}

double dist_share(int id, size_t bytes, double timeout_ms) {
  Segment& s = segment(id);
  if (bytes == 0 || bytes > (size_t(1) << 40)) throw KernelError("dist share: " + std::to_string(bytes) + " bytes per rank (1 B .. 1 TiB)");
  // parts 64-byte aligned (a cache line: no line is written by two members), so parts whose size is
  // a multiple of 64 lie end to end and the region reads as one buffer (dist_whole)
  const size_t per_rank = round_up(bytes, kLine), total = round_up(per_rank * size_t(s.world), kPage);
  const std::string name = s.name + "-s" + std::to_string(s.shares.size());
  void* p = map_shared(name, total, "dist share", "region", "the size");
  auto* region = new SharedRegion();
  region->base = static_cast<char*>(p), region->per_rank = per_rank, region->total = total;
  DistCall c;
  c.op = DistOp::Barrier, c.count = per_rank, c.timeout_ms = timeout_ms, c.name = "share";
  auto deadline = Clock::now() + std::chrono::microseconds(int64_t(timeout_ms * 1000));
  try {
    phase(s, c, deadline, true);  // every member has mapped it (and asked for the same size)
  } catch (...) {
    unref(region);
    throw;
  }
  s.shares.push_back(region);
  if (s.rank == 0) shm_unlink(name.c_str());  // the mappings outlive the name
  phase(s, c, deadline, false);
  region->refs.fetch_add(1);  // the storage's
  return storage_adopt(region->base + per_rank * size_t(s.rank), bytes, unref, region);
}

void dist_run(int id, const DistCall& c) {
  Segment& s = segment(id);
  if (!(c.timeout_ms > 0)) throw KernelError("dist " + c.name + ": timeout must be positive");
  if ((c.op == DistOp::Broadcast || c.op == DistOp::Send || c.op == DistOp::Recv) && (c.peer < 0 || c.peer >= s.world))
    throw KernelError("dist " + c.name + ": peer " + std::to_string(c.peer) + " outside a group of " + std::to_string(s.world));
  auto deadline = Clock::now() + std::chrono::microseconds(int64_t(c.timeout_ms * 1000));
  if (c.op == DistOp::Send || c.op == DistOp::Recv) run_point_to_point(s, c, deadline);
  else run_collective(s, c, deadline);
}

size_t dist_piece_elements(int id, DistOp op, DistDType dtype) {
  Segment& s = segment(id);
  bool packed = op == DistOp::ReduceScatter || op == DistOp::AllToAll;
  return std::max<size_t>(1, s.slot_bytes / dist_dtype_bytes(dtype) / (packed ? size_t(s.world) : 1));
}

// Where a storage from dist_share lies: its region, the offset in this member's part, its bytes.
struct SharedPlace {
  SharedRegion* region;
  int32_t share;
  uint64_t at;
  size_t bytes;
};
static SharedPlace shared_place(Segment& s, double handle, const char* what) {
  size_t bytes = 0;
  char* mine = storage_lookup(handle, &bytes);
  auto [share, at] = s.locate(mine, bytes);
  if (share < 0) throw KernelError(std::string(what) + ": the tensor is not in a shared region of this group (make it with ProcessGroup.shared)");
  return {s.shares[size_t(share)], share, at, bytes};
}

// A new storage over `bytes` at `p` inside the region, holding a reference to it.
static double adopt_in(SharedRegion* region, char* p, size_t bytes) {
  region->refs.fetch_add(1);  // the new storage's
  return storage_adopt(p, bytes, unref, region);
}

double dist_peer(int id, double handle, int r) {
  Segment& s = segment(id);
  if (r < 0 || r >= s.world) throw KernelError("dist peer: rank " + std::to_string(r) + " outside a group of " + std::to_string(s.world));
  SharedPlace p = shared_place(s, handle, "dist peer");
  return adopt_in(p.region, s.peer(r, p.share, p.at, p.bytes), p.bytes);
}

double dist_whole(int id, double handle) {
  Segment& s = segment(id);
  SharedPlace p = shared_place(s, handle, "dist whole");
  if (p.at != 0 || p.bytes != p.region->per_rank)
    throw KernelError("dist whole: the tensor is " + std::to_string(p.bytes) + " bytes at offset " + std::to_string(p.at) + " of a " +
                      std::to_string(p.region->per_rank) + "-byte part; the parts lie end to end only when a whole part's bytes are a multiple of 64");
  return adopt_in(p.region, p.region->base, p.region->per_rank * size_t(s.world));
}

uint64_t dist_shared_calls(int id) { return segment(id).shared_calls.load(); }
uint64_t dist_cma_calls(int id) { return segment(id).cma_calls.load(); }

int dist_cma_state(int id) {
  const Segment& s = segment(id);
  return s.cma == Segment::Cma::Unknown ? -1 : s.cma == Segment::Cma::Yes ? 1 : 0;
}

void dist_waiting(int id, int delta) noexcept {
  std::lock_guard<std::mutex> lock(registry_mu);
  auto& r = registry();
  if (id < 0 || size_t(id) >= r.size() || !r[size_t(id)]) return;  // closed: nothing waits on it any more
  r[size_t(id)]->waiters.fetch_add(delta);
}

void dist_close(int id) {
  std::unique_ptr<Segment> s;
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    auto& r = registry();
    if (id < 0 || size_t(id) >= r.size() || !r[size_t(id)]) return;
    s = std::move(r[size_t(id)]);
  }
  munmap(s->base, s->total);
  for (SharedRegion* r : s->shares) unref(r);
}

bool dist_unlink(const std::string& name) { return shm_unlink(name.c_str()) == 0; }

}  // namespace kestrel
