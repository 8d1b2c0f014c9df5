// exit_watch.h: a thread blocked in poll() on the watched processes' pidfds (readable once the
// process has exited) and an eventfd (a new pid, or stop). MPICH's mpiexec kills the other ranks
// within milliseconds of the first death and then names the lowest rank that ended badly, so the
// launcher's own record of which exit came first is what names the rank that failed; a woken
// thread sees that first exit long before the others (a 2 ms poll of /proc could not, on a loaded machine).
#include "exit_watch.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>

#include "kernel_api.h"

namespace kestrel {
namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Watch {
  std::mutex mu;
  std::vector<std::pair<int, int>> live;  // pid, pidfd
  std::vector<ProcessExit> exits;
  int wake = -1;
  bool stop = false;
  std::thread thread;

  void signal() {
    uint64_t one = 1;
    if (write(wake, &one, sizeof one) < 0) {
      // the counter is saturated or the fd closed: the watcher is awake or gone either way
    }
  }

  void run() {
    for (;;) {
      std::vector<pollfd> fds{{wake, POLLIN, 0}};
      {
        std::lock_guard<std::mutex> lock(mu);
        if (stop) return;
        for (const auto& p : live) fds.push_back({p.second, POLLIN, 0});
      }
      if (poll(fds.data(), fds.size(), -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      const int64_t t = now_ns();
      if (fds[0].revents) {
        uint64_t v;
        if (read(wake, &v, sizeof v) < 0) {
          // spurious: poll again
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      ProcessExit e{{}, t};
      for (size_t i = 1; i < fds.size(); i++) {
        if (!fds[i].revents) continue;
        for (size_t j = 0; j < live.size(); j++)
          if (live[j].second == fds[i].fd) {
            e.pids.push_back(live[j].first);
            close(live[j].second);
            live.erase(live.begin() + long(j));
            break;
          }
      }
      if (!e.pids.empty()) exits.push_back(std::move(e));
    }
  }
};

std::mutex all_mu;
std::map<int, std::shared_ptr<Watch>> all;
int next_id = 1;

std::shared_ptr<Watch> find(int id) {
  std::lock_guard<std::mutex> lock(all_mu);
  auto it = all.find(id);
  if (it == all.end()) throw KernelError("exit watch " + std::to_string(id) + " is not open");
  return it->second;
}

}  // namespace

int exit_watch_start() {
  // pidfds exist from Linux 5.3: find out now rather than when a rank has already died
  const int probe = int(syscall(SYS_pidfd_open, getpid(), 0));
  if (probe < 0) throw KernelError(std::string("pidfd_open: ") + std::strerror(errno));
  close(probe);
  auto w = std::make_shared<Watch>();
  w->wake = eventfd(0, EFD_CLOEXEC);
  if (w->wake < 0) throw KernelError(std::string("eventfd: ") + std::strerror(errno));
  w->thread = std::thread([w] { w->run(); });
  std::lock_guard<std::mutex> lock(all_mu);
  all[next_id] = w;
  return next_id++;
}

void exit_watch_add(int id, int pid) {
  auto w = find(id);
  const int fd = int(syscall(SYS_pidfd_open, pid, 0));
  std::lock_guard<std::mutex> lock(w->mu);
  if (fd >= 0) w->live.push_back({pid, fd});
  else if (errno == ESRCH) w->exits.push_back({{pid}, now_ns()});
  else throw KernelError("pidfd_open(" + std::to_string(pid) + "): " + std::strerror(errno));
  w->signal();
}

std::vector<ProcessExit> exit_watch_exits(int id) {
  auto w = find(id);
  std::lock_guard<std::mutex> lock(w->mu);
  return w->exits;
}

void exit_watch_stop(int id) {
  std::shared_ptr<Watch> w;
  {
    std::lock_guard<std::mutex> lock(all_mu);
    auto it = all.find(id);
    if (it == all.end()) return;
    w = it->second;
    all.erase(it);
  }
  {
    std::lock_guard<std::mutex> lock(w->mu);
    w->stop = true;
  }
  w->signal();
  w->thread.join();
  for (const auto& p : w->live) close(p.second);
  close(w->wake);
}

}  // namespace kestrel
