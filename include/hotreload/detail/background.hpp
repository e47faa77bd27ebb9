#ifndef HOTRELOAD_DETAIL_BACKGROUND_HPP
#define HOTRELOAD_DETAIL_BACKGROUND_HPP

// Work that belongs on no thread of the program's, and that nobody waits for: unmapping a
// version that is gone (dlclose runs its static destructors, the removal of its shadow copy
// frees blocks), removing the link that held a replaced library file, making the file of a
// plugin's next shadow copy. One thread per process, started on first use, runs it in order;
// it is never destroyed (it may outlive static destructors, and a job may block in plugin
// code without holding up anything but later jobs).
//
// It runs at the lowest priority (nice 19; `hotreload-bg` in top -H). The old version is
// released as a reload completes, and the unmapping woken then, at the default priority,
// could take the core from the program's own thread right when the caller resumes and asks
// for the new version: where the scheduler sees no cache shared between the cores (this
// project's PVM guests), it queues a woken thread on its waker's core, and preempts. On a busy
// machine the jobs still get their share (about 1.5% of a core), which is what unmapping is
// worth to a program serving requests. (Measured: benchmarks/README.md.) Waking this thread
// costs its waker 10-40 us: for a version let go just after a reload, a hook thread, still
// awake then, is handed that wake-up (versions.hpp, hook_threads.hpp); the job runs here.

#include <condition_variable>
#include <functional>
#include <mutex>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace hotreload::detail {

/// When the background thread is woken for a job: `now`, or `later`, with the next job that
/// wakes it (for work nobody needs soon: waking a sleeping thread costs the caller 10-15 us on
/// this project's VMs).
enum class wake { now, later };

/// Runs `job` on the background thread, after the jobs queued before it; here if that thread
/// cannot be started.
inline void in_background(std::function<void()> job, wake when = wake::now) {
  struct queue {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<std::function<void()>> jobs;
    bool started = false;
  };
  static auto* q = new queue; // never destroyed, with its thread
  std::unique_lock lk(q->mu);
  if (!q->started) {
    try {
      std::thread([] {
        ::prctl(PR_SET_NAME, "hotreload-bg");
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19); // this thread only (see the top)
        std::vector<std::function<void()>> batch;
        for (;;) {
          {
            std::unique_lock lk(q->mu);
            q->cv.wait(lk, [] { return !q->jobs.empty(); });
            batch.swap(q->jobs);
          }
          for (auto& j : batch) j();
          batch.clear();
        }
      }).detach();
      q->started = true;
    } catch (const std::system_error&) {
      lk.unlock();
      job();
      return;
    }
  }
  q->jobs.push_back(std::move(job));
  lk.unlock();
  if (when == wake::now) q->cv.notify_one();
}

} // namespace hotreload::detail

#endif
