// The MPI transport's calls (dist_mpi.h). Each call moves in pieces of at most one staging slot
// (16 MiB by default) through MPI's non-blocking collectives, polled with MPI_Test until done or
// the deadline: a hung peer is a timeout that names it (a ping on a duplicate communicator asks
// every member which call it is in; the silent ones are named), a dead peer on this machine is
// seen by its pid at once, and a failed group makes the process MPI_Abort the job at exit, so
// that nobody waits for it. The staging slots persist, so their pages are faulted in once.
// bfloat16/float16 are widened to float32 for MPI (which has no half types), reduced there and
// rounded once, as the shared-memory transport does; the order of MPI's own reduction is its own
// (float sums over 3+ ranks may differ from rank order in the last bits).
#include "dist_mpi.h"

#include <dlfcn.h>
#include <sched.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>

#include "cast.h"
#include "kernel_api.h"
#include "mpi/kestrel_mpi.h"

namespace kestrel {
namespace {

struct Api {
  void* handle = nullptr;
  kmpi_abi_version_fn abi_version;
  kmpi_init_fn init;
  kmpi_library_version_fn library_version;
  kmpi_error_string_fn error_string;
  kmpi_comm_create_group_fn comm_create_group;
  kmpi_comm_dup_fn comm_dup;
  kmpi_comm_free_fn comm_free;
  kmpi_iallreduce_fn iallreduce;
  kmpi_ireduce_scatter_block_fn ireduce_scatter_block;
  kmpi_iallgather_fn iallgather;
  kmpi_ialltoall_fn ialltoall;
  kmpi_ibcast_fn ibcast;
  kmpi_isend_fn isend;
  kmpi_irecv_fn irecv;
  kmpi_ibarrier_fn ibarrier;
  kmpi_test_fn test;
  kmpi_iprobe_fn iprobe;
  kmpi_finalize_fn finalize;
  kmpi_abort_fn abort;
} api;

// MPI_THREAD_SERIALIZED: calls come from several threads (libuv's pool; a subgroup's call may be
// in flight beside the world's), so every MPI call holds this lock; waits poll, never block in it
std::mutex mpi_mu;
std::atomic<bool> finished{false};

template <class F, class... A> int locked(F f, A... a) {
  std::lock_guard<std::mutex> lock(mpi_mu);
  if (finished) throw KernelError("dist: MPI was finalized (the process is exiting)");
  return f(a...);
}

std::string mpi_error(int rc) {
  char s[512];
  api.error_string(rc, s, int(sizeof s));
  return s;
}

void check(int rc, const std::string& what) {
  if (rc != 0) throw KernelError("dist " + what + ": MPI error " + std::to_string(rc) + ": " + mpi_error(rc));
}

constexpr int kTagData = 1, kTagPing = 2, kTagPong = 3;
constexpr int kDescriptor = 5;  // op, dtype, reduce, count, peer
using Clock = std::chrono::steady_clock;

struct Peer {
  int64_t pid = 0, host = 0;
};
std::vector<Peer> world_peers;  // by global rank
int64_t my_host = 0;

struct Group {
  int comm = -1, ctrl = -1, rank = 0, world = 0;
  std::vector<int> global;  // global rank of each member
  size_t slot_bytes = 0;
  std::vector<char> stage_a, stage_b;
  int64_t seq = 0;  // calls started on this group (the same on every member)
  std::vector<int64_t> ping_in, pong_out;
  std::vector<kmpi_request> pong_req;
  std::vector<char> pong_busy;
  std::string broken;
};

// Never destroyed (as dist_shm.cc's registry): a call still running on a libuv thread at exit
// must not read groups that exit's static destructors freed.
std::mutex& registry_mu = *new std::mutex;
std::vector<std::unique_ptr<Group>>& groups = *new std::vector<std::unique_ptr<Group>>;
std::atomic<bool> any_broken{false};

Group& group(int id) {
  std::lock_guard<std::mutex> lock(registry_mu);
  if (id < 0 || size_t(id) >= groups.size() || !groups[size_t(id)]) throw KernelError("dist: unknown or freed MPI group id " + std::to_string(id));
  return *groups[size_t(id)];
}

std::string who(const Group& g, int r) { return "rank " + std::to_string(g.global[size_t(r)]); }

// Between two MPI_Tests: yield for the first 20 ms of a wait (Open MPI's non-blocking collectives
// advance a round per test, so a sleep here costs a round), then sleep, longer after 200 ms.
void pause_briefly(Clock::time_point since) {
  auto waited = Clock::now() - since;
  if (waited < std::chrono::milliseconds(20)) {
    sched_yield();
    return;
  }
  timespec ts{0, waited < std::chrono::milliseconds(200) ? 50 * 1000 : 500 * 1000};
  nanosleep(&ts, nullptr);
}

// Tests a request until done; for the short exchanges of pings (a message known to be there).
void finish_quickly(kmpi_request& r, const char* what) {
  auto since = Clock::now();
  for (int spins = 0; spins < 200000; spins++) {
    int done = 0;
    check(locked(api.test, &r, &done), what);
    if (done) return;
    pause_briefly(since);
  }
  throw KernelError(std::string("dist: ") + what + " did not complete");
}

// Answers a waiting member's question "which call are you in?" with this group's call count.
void serve_pings(Group& g) {
  int src = -1;
  check(locked(api.iprobe, g.ctrl, kTagPing, &src), "ping");
  if (src < 0) return;
  kmpi_request r;
  check(locked(api.irecv, g.ctrl, static_cast<void*>(&g.ping_in[size_t(src)]), 8, src, kTagPing, &r), "ping");
  finish_quickly(r, "ping");
  if (g.pong_busy[size_t(src)]) {
    int done = 0;
    check(locked(api.test, &g.pong_req[size_t(src)], &done), "pong");
    if (!done) return;
  }
  g.pong_out[size_t(src)] = g.seq;
  check(locked(api.isend, g.ctrl, static_cast<const void*>(&g.pong_out[size_t(src)]), 8, src, kTagPong, &g.pong_req[size_t(src)]), "pong");
  g.pong_busy[size_t(src)] = 1;
}

// After a timeout: asks `members` which call they are in and names those that are not in this one.
std::string diagnose(Group& g, const std::vector<int>& members, const DistCall& c) {
  std::vector<int64_t> answer(size_t(g.world), -1);
  std::vector<kmpi_request> asks(size_t(g.world));
  int64_t mine = g.seq;
  for (int r : members) check(locked(api.isend, g.ctrl, static_cast<const void*>(&mine), 8, r, kTagPing, &asks[size_t(r)]), "ping");
  auto until = Clock::now() + std::chrono::milliseconds(1500);
  size_t answered = 0;
  while (answered < members.size() && Clock::now() < until) {
    serve_pings(g);
    int src = -1;
    check(locked(api.iprobe, g.ctrl, kTagPong, &src), "pong");
    if (src < 0) {
      timespec ts{0, 1000 * 1000};
      nanosleep(&ts, nullptr);
      continue;
    }
    kmpi_request r;
    check(locked(api.irecv, g.ctrl, static_cast<void*>(&answer[size_t(src)]), 8, src, kTagPong, &r), "pong");
    finish_quickly(r, "pong");
    answered++;
  }
  std::string ms = std::to_string(int64_t(c.timeout_ms));
  std::string out;
  for (int r : members) {
    int64_t a = answer[size_t(r)];
    std::string line = a < 0 ? who(g, r) + " did not arrive within " + ms + " ms (it does not answer: hung, dead, or busy outside any collective)"
                      : a < mine ? who(g, r) + " did not arrive within " + ms + " ms (it is still in call #" + std::to_string(a) + ", this rank in #" + std::to_string(mine) + ")"
                                 : "";
    if (!line.empty()) out += (out.empty() ? "" : "; ") + line;
  }
  return out.empty() ? "every member is in this call, but MPI did not complete it within " + ms + " ms" : out;
}

// The first member on this machine whose process is gone, or -1.
int dead_local_peer(const Group& g, const std::vector<int>& members) {
  for (int r : members) {
    const Peer& p = world_peers[size_t(g.global[size_t(r)])];
    if (p.host == my_host && p.pid > 0 && kill(pid_t(p.pid), 0) != 0 && errno == ESRCH) return r;
  }
  return -1;
}

// Polls a request to completion; `members` are the ranks this call waits for (all, or the peer).
void wait(Group& g, kmpi_request& req, const DistCall& c, const std::vector<int>& members, Clock::time_point deadline) {
  const auto since = Clock::now();
  auto next_check = since + std::chrono::milliseconds(20);
  for (;;) {
    int done = 0;
    check(locked(api.test, &req, &done), c.name);
    if (done) return;
    serve_pings(g);
    pause_briefly(since);
    auto now = Clock::now();
    if (now < next_check) continue;
    next_check = now + std::chrono::milliseconds(20);
    int dead = dead_local_peer(g, members);
    if (dead >= 0)
      throw KernelError("dist " + c.name + ": " + who(g, dead) + " (pid " + std::to_string(world_peers[size_t(g.global[size_t(dead)])].pid) +
                        ") exited while this rank waited for it");
    if (now > deadline) throw KernelError("dist " + c.name + ": " + diagnose(g, members, c));
  }
}

const char* op_name(int64_t op) {
  static const char* names[] = {"allReduce", "broadcast", "allGather", "reduceScatter", "allToAll", "send", "recv", "barrier"};
  return op >= 0 && op < 8 ? names[op] : "?";
}

std::string describe(const Group& g, int r, const int64_t* d, bool me) {
  return who(g, r) + (me ? " is in " : " in ") + op_name(d[0]) + " of " + std::to_string(d[3]) + (me ? " elements" : "") + " (dtype " + std::to_string(d[1]) +
         ", op " + std::to_string(d[2]) + ", peer " + std::to_string(d[4]) + ")";
}

// Every member says which call it is in (one small allgather), so that members in different
// calls fail with both named instead of mixing their bytes or hanging.
void agree(Group& g, const DistCall& c, const std::vector<int>& all, Clock::time_point deadline) {
  int64_t mine[kDescriptor] = {int64_t(c.op), int64_t(c.dtype), int64_t(c.reduce), int64_t(c.count), int64_t(c.peer)};
  std::vector<int64_t> every(size_t(kDescriptor) * size_t(g.world));
  kmpi_request r;
  check(locked(api.iallgather, g.comm, static_cast<const void*>(mine), static_cast<void*>(every.data()), int(sizeof mine), &r), c.name);
  wait(g, r, c, all, deadline);
  for (int o = 0; o < g.world; o++) {
    const int64_t* d = &every[size_t(o) * kDescriptor];
    if (!std::equal(d, d + kDescriptor, mine))
      throw KernelError("dist " + c.name + ": ranks disagree on the call: " + describe(g, g.rank, mine, true) + ", " + describe(g, o, d, false));
  }
}

bool is_half(DistDType d) { return d == DistDType::BF16 || d == DistDType::F16; }

int kmpi_dtype(DistDType d) {
  switch (d) {
    case DistDType::F64: return KMPI_F64;
    case DistDType::I32: return KMPI_I32;
    case DistDType::I64: return KMPI_I64;
    case DistDType::U8: return KMPI_U8;
    default: return KMPI_F32;  // float32, and the widened half types
  }
}

int kmpi_op(DistReduce r) { return r == DistReduce::Max ? KMPI_MAX : r == DistReduce::Min ? KMPI_MIN : KMPI_SUM; }

void widen(DistDType d, const char* src, float* dst, size_t n) {
  const uint16_t* s = reinterpret_cast<const uint16_t*>(src);
  if (d == DistDType::BF16) for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(s[i]);
  else for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(s[i]);
}

void narrow(DistDType d, const float* src, char* dst, size_t n) {
  uint16_t* o = reinterpret_cast<uint16_t*>(dst);
  if (d == DistDType::BF16) for (size_t i = 0; i < n; i++) o[i] = f32_to_bf16(src[i]);
  else for (size_t i = 0; i < n; i++) o[i] = f32_to_f16(src[i]);
}

// avg = sum / N in the type MPI reduced (float for the half types, before they are rounded)
void divide(DistDType d, char* p, size_t n, int world) {
  if (d == DistDType::F64) for (double* x = reinterpret_cast<double*>(p); n--; x++) *x = *x / double(world);
  else for (float* x = reinterpret_cast<float*>(p); n--; x++) *x = *x / float(world);
}

size_t piece_elements(const Group& g, DistOp op, DistDType dt) {
  const size_t eb = dist_dtype_bytes(dt), wide = is_half(dt) ? 4 : eb, N = size_t(g.world);
  size_t per = op == DistOp::AllReduce ? wide : op == DistOp::ReduceScatter ? wide * N : op == DistOp::AllGather || op == DistOp::AllToAll ? eb * N : eb;
  return std::max<size_t>(1, g.slot_bytes / per);
}

// One piece [off, off + m) of a collective (elements per rank).
void run_piece(Group& g, const DistCall& c, size_t off, size_t m, const std::vector<int>& all, Clock::time_point deadline) {
  const size_t eb = dist_dtype_bytes(c.dtype), N = size_t(g.world), n = c.count, me = size_t(g.rank);
  const bool half = is_half(c.dtype);
  const int dt = kmpi_dtype(c.dtype), op = kmpi_op(c.reduce);
  char* a = g.stage_a.data();
  char* b = g.stage_b.data();
  kmpi_request r;
  auto go = [&](int rc) { check(rc, c.name); wait(g, r, c, all, deadline); };
  switch (c.op) {
    case DistOp::AllReduce: {
      char* buf = half ? a : c.dst + off * eb;
      if (half) widen(c.dtype, c.src + off * eb, reinterpret_cast<float*>(a), m);
      else if (c.dst != c.src) std::memcpy(buf, c.src + off * eb, m * eb);
      go(locked(api.iallreduce, g.comm, static_cast<void*>(buf), int(m), dt, op, &r));
      if (c.reduce == DistReduce::Avg) divide(c.dtype, buf, m, g.world);
      if (half) narrow(c.dtype, reinterpret_cast<float*>(a), c.dst + off * eb, m);
      break;
    }
    case DistOp::ReduceScatter: {
      const size_t wb = half ? 4 : eb;  // bytes of an element as MPI reduces it
      for (size_t q = 0; q < N; q++) {
        const char* from = c.src + (q * n + off) * eb;
        if (half) widen(c.dtype, from, reinterpret_cast<float*>(a + q * m * wb), m);
        else std::memcpy(a + q * m * wb, from, m * eb);
      }
      char* out = half ? b : c.dst + off * eb;
      go(locked(api.ireduce_scatter_block, g.comm, static_cast<const void*>(a), static_cast<void*>(out), int(m), dt, op, &r));
      if (c.reduce == DistReduce::Avg) divide(c.dtype, out, m, g.world);
      if (half) narrow(c.dtype, reinterpret_cast<float*>(b), c.dst + off * eb, m);
      break;
    }
    case DistOp::AllGather:
      go(locked(api.iallgather, g.comm, static_cast<const void*>(c.src + off * eb), static_cast<void*>(a), int(m * eb), &r));
      for (size_t q = 0; q < N; q++) std::memcpy(c.dst + (q * n + off) * eb, a + q * m * eb, m * eb);
      break;
    case DistOp::AllToAll:
      for (size_t q = 0; q < N; q++) std::memcpy(a + q * m * eb, c.src + (q * n + off) * eb, m * eb);
      go(locked(api.ialltoall, g.comm, static_cast<const void*>(a), static_cast<void*>(b), int(m * eb), &r));
      for (size_t q = 0; q < N; q++) std::memcpy(c.dst + (q * n + off) * eb, b + q * m * eb, m * eb);
      break;
    case DistOp::Broadcast:
      if (int(me) == c.peer && c.dst != c.src) std::memcpy(c.dst + off * eb, c.src + off * eb, m * eb);
      go(locked(api.ibcast, g.comm, static_cast<void*>(c.dst + off * eb), int(m * eb), c.peer, &r));
      break;
    default: throw KernelError("dist: not a collective");
  }
}

void run_point_to_point(Group& g, const DistCall& c, Clock::time_point deadline) {
  if (c.peer == g.rank) throw KernelError("dist " + c.name + ": peer is this rank (" + who(g, g.rank) + ")");
  const size_t eb = dist_dtype_bytes(c.dtype), piece = piece_elements(g, c.op, c.dtype);
  const std::vector<int> peer{c.peer};
  for (size_t off = 0; off < c.count; off += piece) {
    const size_t m = std::min(piece, c.count - off);
    kmpi_request r;
    if (c.op == DistOp::Send) check(locked(api.isend, g.comm, static_cast<const void*>(c.src + off * eb), int(m * eb), c.peer, kTagData, &r), c.name);
    else check(locked(api.irecv, g.comm, static_cast<void*>(c.dst + off * eb), int(m * eb), c.peer, kTagData, &r), c.name);
    wait(g, r, c, peer, deadline);
  }
}

template <class F> F resolve(const char* name) {
  void* p = dlsym(api.handle, name);
  if (!p) throw KernelError(std::string("dist: the MPI library lacks ") + name + " (built from another Kestrel version?)");
  return reinterpret_cast<F>(p);
}

std::unique_ptr<Group> make_group(int comm, int rank, std::vector<int> global, size_t slot_bytes) {
  auto g = std::make_unique<Group>();
  g->comm = comm, g->rank = rank, g->world = int(global.size()), g->global = std::move(global), g->slot_bytes = slot_bytes;
  check(locked(api.comm_dup, comm, &g->ctrl), "open");
  g->stage_a.assign(slot_bytes, 0), g->stage_b.assign(slot_bytes, 0);  // touched now: no page faults inside calls
  g->ping_in.assign(size_t(g->world), 0), g->pong_out.assign(size_t(g->world), 0);
  g->pong_req.resize(size_t(g->world)), g->pong_busy.assign(size_t(g->world), 0);
  return g;
}

int add(std::unique_ptr<Group> g) {
  std::lock_guard<std::mutex> lock(registry_mu);
  groups.push_back(std::move(g));
  return int(groups.size() - 1);
}

void need_loaded() {
  if (!api.handle) throw KernelError("dist: the MPI library is not loaded (src/dist/mpi_library.ts loads it)");
}

}  // namespace

std::string mpi_load(const std::string& path) {
  if (api.handle) {
    char v[512];
    api.library_version(v, int(sizeof v));
    return v;
  }
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!h) throw KernelError("dist: cannot open the MPI library " + path + ": " + dlerror());
  api.handle = h;
  try {
    api.abi_version = resolve<kmpi_abi_version_fn>("kmpi_abi_version");
    if (api.abi_version() != KMPI_ABI_VERSION) throw KernelError("dist: " + path + " has ABI version " + std::to_string(api.abi_version()) + ", this addon needs " + std::to_string(KMPI_ABI_VERSION));
    api.init = resolve<kmpi_init_fn>("kmpi_init");
    api.library_version = resolve<kmpi_library_version_fn>("kmpi_library_version");
    api.error_string = resolve<kmpi_error_string_fn>("kmpi_error_string");
    api.comm_create_group = resolve<kmpi_comm_create_group_fn>("kmpi_comm_create_group");
    api.comm_dup = resolve<kmpi_comm_dup_fn>("kmpi_comm_dup");
    api.comm_free = resolve<kmpi_comm_free_fn>("kmpi_comm_free");
    api.iallreduce = resolve<kmpi_iallreduce_fn>("kmpi_iallreduce");
    api.ireduce_scatter_block = resolve<kmpi_ireduce_scatter_block_fn>("kmpi_ireduce_scatter_block");
    api.iallgather = resolve<kmpi_iallgather_fn>("kmpi_iallgather");
    api.ialltoall = resolve<kmpi_ialltoall_fn>("kmpi_ialltoall");
    api.ibcast = resolve<kmpi_ibcast_fn>("kmpi_ibcast");
    api.isend = resolve<kmpi_isend_fn>("kmpi_isend");
    api.irecv = resolve<kmpi_irecv_fn>("kmpi_irecv");
    api.ibarrier = resolve<kmpi_ibarrier_fn>("kmpi_ibarrier");
    api.test = resolve<kmpi_test_fn>("kmpi_test");
    api.iprobe = resolve<kmpi_iprobe_fn>("kmpi_iprobe");
    api.finalize = resolve<kmpi_finalize_fn>("kmpi_finalize");
    api.abort = resolve<kmpi_abort_fn>("kmpi_abort");
  } catch (...) {
    api.handle = nullptr;
    throw;
  }
  char v[512];
  api.library_version(v, int(sizeof v));
  return v;
}

MpiWorld mpi_init(size_t slot_bytes, double timeout_ms) {
  need_loaded();
  if (slot_bytes < 4096 || slot_bytes > (size_t(1) << 30) || slot_bytes % 4096)
    throw KernelError("dist: MPI slot size " + std::to_string(slot_bytes) + " must be a multiple of 4096 in [4096, 1 GiB]");
  int rank = 0, size = 0, ok = 0;
  check(locked(api.init, &rank, &size, &ok), "MPI_Init_thread");
  if (!ok) throw KernelError("dist: this MPI does not provide MPI_THREAD_SERIALIZED, which the MPI transport needs");
  std::vector<int> global(static_cast<size_t>(size));
  for (int r = 0; r < size; r++) global[size_t(r)] = r;
  int id = add(make_group(0, rank, global, slot_bytes));
  Group& g = group(id);
  // pids and hosts of every rank: a dead peer on this machine is then an error at once
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  my_host = int64_t(std::hash<std::string>{}(host) & 0x7fffffffffffffff);
  int64_t mine[2] = {int64_t(getpid()), my_host};
  std::vector<int64_t> every(2 * size_t(size));
  DistCall c;
  c.name = "init (rank " + std::to_string(rank) + ")", c.timeout_ms = timeout_ms;
  kmpi_request r;
  check(locked(api.iallgather, g.comm, static_cast<const void*>(mine), static_cast<void*>(every.data()), int(sizeof mine), &r), c.name);
  world_peers.assign(size_t(size), Peer{});  // unknown until the exchange completes
  std::vector<int> all;
  for (int q = 0; q < size; q++) if (q != rank) all.push_back(q);
  wait(g, r, c, all, Clock::now() + std::chrono::microseconds(int64_t(timeout_ms * 1000)));
  for (int q = 0; q < size; q++) world_peers[size_t(q)] = Peer{every[2 * size_t(q)], every[2 * size_t(q) + 1]};
  return {id, rank, size};
}

// MPI_Comm_create_group blocks (no timeout): the members issue it together, after the parent's earlier calls
int mpi_group(int parent, const std::vector<int>& parent_ranks) {
  Group& p = group(parent);
  auto me = std::find(parent_ranks.begin(), parent_ranks.end(), p.rank);
  if (me == parent_ranks.end()) throw KernelError("dist: this rank is not a member of the subgroup it creates");
  std::vector<int> global;
  for (int r : parent_ranks) {
    if (r < 0 || r >= p.world) throw KernelError("dist: subgroup member " + std::to_string(r) + " outside a group of " + std::to_string(p.world));
    global.push_back(p.global[size_t(r)]);
  }
  int comm = -1;
  check(locked(api.comm_create_group, p.comm, parent_ranks.data(), int(parent_ranks.size()), &comm), "newGroup");
  return add(make_group(comm, int(me - parent_ranks.begin()), global, p.slot_bytes));
}

std::vector<int> mpi_group_info(int id) {
  const Group& g = group(id);
  std::vector<int> v{g.rank, g.world};
  v.insert(v.end(), g.global.begin(), g.global.end());
  return v;
}

void mpi_run(int id, const DistCall& c) {
  Group& g = group(id);
  if (!g.broken.empty()) throw KernelError("dist " + c.name + ": the process group is broken by an earlier failure: " + g.broken);
  if (!(c.timeout_ms > 0)) throw KernelError("dist " + c.name + ": timeout must be positive");
  if ((c.op == DistOp::Broadcast || c.op == DistOp::Send || c.op == DistOp::Recv) && (c.peer < 0 || c.peer >= g.world))
    throw KernelError("dist " + c.name + ": peer " + std::to_string(c.peer) + " outside a group of " + std::to_string(g.world));
  auto deadline = Clock::now() + std::chrono::microseconds(int64_t(c.timeout_ms * 1000));
  try {
    g.seq++;
    if (c.op == DistOp::Send || c.op == DistOp::Recv) return run_point_to_point(g, c, deadline);
    std::vector<int> all;
    for (int r = 0; r < g.world; r++) if (r != g.rank) all.push_back(r);
    agree(g, c, all, deadline);
    if (c.op == DistOp::Barrier || c.count == 0) return;  // agree() was the meeting
    const size_t piece = piece_elements(g, c.op, c.dtype);
    for (size_t off = 0; off < c.count; off += piece) run_piece(g, c, off, std::min(piece, c.count - off), all, deadline);
  } catch (const std::exception& e) {
    g.broken = e.what();
    any_broken = true;
    throw;
  }
}

size_t mpi_piece_elements(int id, DistOp op, DistDType dtype) { return piece_elements(group(id), op, dtype); }

void mpi_free(int id) {
  std::unique_ptr<Group> g;
  {
    std::lock_guard<std::mutex> lock(registry_mu);
    if (id < 0 || size_t(id) >= groups.size() || !groups[size_t(id)]) return;
    if (!groups[size_t(id)]->broken.empty()) return;  // a call may still be pending on it: keep its buffers
    g = std::move(groups[size_t(id)]);
  }
  if (finished) return;
  locked(api.comm_free, g->ctrl);
  locked(api.comm_free, g->comm);
}

void mpi_finish(int exit_code) {
  if (!api.handle || finished) return;
  std::lock_guard<std::mutex> lock(mpi_mu);
  finished = true;
  // A failed process just exits (its error is still being printed): mpirun sees the non-zero
  // code and stops the job. One that caught a broken group's error and exits 0 aborts the job,
  // as MPI_Finalize would wait for the peers that broke it.
  if (exit_code != 0) return;
  if (any_broken) {
    // half a second for this rank's last output to be forwarded and for the others to report their
    // own view of the failure, before MPI_Abort ends the job (MPICH's mpirun kills at once)
    timespec grace{0, 500 * 1000 * 1000};
    nanosleep(&grace, nullptr);
    api.abort(1);  // never returns: the job ends
  }
  api.finalize();
}

}  // namespace kestrel
