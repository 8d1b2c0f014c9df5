// The order in which processes that are not our children exit (src/dist/mpirun.ts: the ranks are
// mpirun's children, not the launcher's, so it cannot wait for them). Linux pidfds, one per
// process, are polled by a thread that notes each exit as it wakes, with the monotonic time.
#pragma once
#include <cstdint>
#include <vector>

namespace kestrel {

struct ProcessExit {
  std::vector<int> pids;  // the processes one wake-up found exited (more than one: their order is unknown)
  int64_t ns;             // CLOCK_MONOTONIC (steady_clock) when the watcher saw them
};

// A new watch; throws KernelError where pidfds are missing (Linux < 5.3).
int exit_watch_start();
// Watches pid; a pid that is already gone counts as exited now.
void exit_watch_add(int watch, int pid);
std::vector<ProcessExit> exit_watch_exits(int watch);
void exit_watch_stop(int watch);

}  // namespace kestrel
