// The shared-memory transport of src/dist (dist_shm.cc): one POSIX shm segment per process group,
// a slot per rank for one piece of a collective, and futex-backed sequence counters so that a
// waiting rank sleeps (4 ranks on 2 cores) instead of spinning. Plain C++ over pointers and sizes;
// binding.cc runs each call on a worker thread and turns it into a Promise.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kestrel {

enum class DistOp : int { AllReduce = 0, Broadcast = 1, AllGather = 2, ReduceScatter = 3, AllToAll = 4, Send = 5, Recv = 6, Barrier = 7 };
enum class DistReduce : int { Sum = 0, Avg = 1, Max = 2, Min = 3 };
// element types the transport reduces (src/dist/transport.ts DIST_DTYPES keeps this order)
enum class DistDType : int { F32 = 0, BF16 = 1, F16 = 2, I32 = 3, I64 = 4, F64 = 5, U8 = 6 };

size_t dist_dtype_bytes(DistDType d);

// Bytes a call reads from its input and writes to its output on one member of a group of `world`
// (count is per rank: see DistCall).
struct DistBytes {
  size_t src, dst;
};
DistBytes dist_call_bytes(DistOp op, size_t count, DistDType dtype, size_t world);

// One call: what to do, on which bytes. src/dst are already resolved to pointers (the caller
// checked them against their storage); count is the element count per rank (see dist_shm.cc).
struct DistCall {
  DistOp op = DistOp::Barrier;
  DistReduce reduce = DistReduce::Sum;
  DistDType dtype = DistDType::F32;
  int peer = 0;  // broadcast root, send destination, recv source (group-local rank)
  const char* src = nullptr;
  char* dst = nullptr;
  size_t count = 0;
  double timeout_ms = 0;
  std::string name;  // for messages: "allReduce", ...
};

// Opens (creating when absent) the segment `name` for a group of `global_ranks.size()` ranks in
// which this process is `local_rank`; every member passes the same name, ranks and slot size.
// Returns an id for the calls below.
int dist_open(const std::string& name, int local_rank, const std::vector<int>& global_ranks, size_t slot_bytes);
// Maps a region of `bytes` per member that every member of the group maps whole (all call it
// together, with the same size, when no call of the group is running) and returns a storage handle
// over this member's part: collectives whose buffers all lie in such regions read the peers' in
// place instead of copying through the slots (dist_shm.cc).
double dist_share(int id, size_t bytes, double timeout_ms);
// A storage over member r's copy of the shared storage `handle` (this member's part of a region
// from dist_share): the same bytes at the same offset of r's part. Readers synchronize themselves
// (a barrier before and after), as with any memory two processes share.
double dist_peer(int id, double handle, int r);
// A storage over every member's part of the region whose whole part `handle` is, end to end (member
// r's at r × its bytes): the parts are contiguous when a part's bytes are a multiple of 64. Readers
// synchronize themselves, as with dist_peer.
double dist_whole(int id, double handle);
// Collectives of the group that ran in place on shared regions so far (tests and benchmarks).
uint64_t dist_shared_calls(int id);
// ... that took the same direct path reading some member's private buffer with process_vm_readv.
uint64_t dist_cma_calls(int id);
// Whether the group's members read each other's private buffers: -1 not probed yet (before its
// first collective), 1 yes, 0 no (denied on some member, or KESTREL_DIST_CMA=0).
int dist_cma_state(int id);
// JS begins (delta 1) or ends (-1) waiting for the group's calls: while any wait, a rank waiting
// for a peer yields its core longer before it sleeps (dist_shm.cc wait_for).
// A closed or unknown id is ignored (never throws: the binding ends a wait from a destructor).
void dist_waiting(int id, int delta) noexcept;
// Runs one call to completion (blocking; throws KernelError naming the rank on a timeout or a dead peer).
void dist_run(int id, const DistCall& call);
// Unmaps the segment (the name stays until dist_unlink).
void dist_close(int id);
// Removes the name from /dev/shm; false when it was already gone.
bool dist_unlink(const std::string& name);
// Elements of `dtype` one piece of a collective carries for a group of this size (tests use it to
// pick sizes that cross piece boundaries).
size_t dist_piece_elements(int id, DistOp op, DistDType dtype);

}  // namespace kestrel
