#ifndef HOTRELOAD_DETAIL_HOOK_THREADS_HPP
#define HOTRELOAD_DETAIL_HOOK_THREADS_HPP

// Where plugin code runs: constructors and hooks run on threads of the reloader's own, never
// on its strand nor (directly) on the program's io_context. A call that blocks its thread
// past its limit is abandoned and another thread takes over the other calls, so neither the
// strand, nor the watchdog that runs on it, nor the callers waiting on it depend on plugin
// code giving a thread back.
//
// A hand-off between threads costs a wake-up (about 25 us each way on a small VM), and a
// reload makes five plugin calls in a row. So during a burst of calls (a reload, a start, a
// stop) the threads stay awake between calls, polling for a moment instead of sleeping,
// and the strand side polls for a moment for a quick call's end (hooks.hpp): a quick call
// then costs a few microseconds. Both poll with sched_yield, not a pause instruction: on a
// machine with two cores (the other one busy, say with a probe process) the thread polling
// and the thread it waits for may share a core, and yielding hands it over.

#include <hotreload/detail/sync.hpp>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>

namespace hotreload::detail {

class hook_threads {
  // An io_context whose queued and pending handlers can be destroyed before it is: a job
  // suspended in it (waiting for a plugin_ptr, or a hook awaiting a timer) holds its own
  // completion handler, which holds the job's state, which holds this context: a cycle that
  // only destroying the job breaks.
  struct context : asio::io_context {
    void destroy_pending() { shutdown(); }
  };

  struct shared_state {
    context ctx;
    std::atomic<int> busy{0};                  // bursts under way
    std::atomic<clock::rep> lingering_until{0}; // and until then, after the last one ended
    // Until when the cores count as contended (clock ticks): a poller lost its core for longer
    // than `starved` in one yield (a busy program shares it). Polling would then cost a
    // scheduler tick (4 ms here) per hand-off, where a sleeping thread that is woken runs at
    // once; so for `contention_memory` the threads sleep between calls and the strand waits.
    std::atomic<clock::rep> contended_until{0};
    std::atomic<int> polling{0}; // threads polling for calls now (awake: a post wakes nobody)
    asio::executor_work_guard<asio::io_context::executor_type> work{ctx.get_executor()};
    std::mutex mu;
    std::condition_variable exited;
    int live = 0;         // threads still running
    bool closed = false;  // close() is done waiting: the last thread out clears the jobs
    bool cleared = false; // the suspended jobs were destroyed (by close() or that thread)
  };

public:
  using executor_type = asio::strand<asio::io_context::executor_type>;

  hook_threads() = default;
  hook_threads(const hook_threads&) = delete;
  hook_threads& operator=(const hook_threads&) = delete;
  ~hook_threads() { close(); }

  /// A strand of its own for one call: the handlers of a call run one at a time (as they did
  /// on the reloader's strand), separate calls side by side. The first call starts a thread.
  executor_type executor() {
    std::lock_guard lk(mu_);
    if (threads_ == 0 && !closed_) add_thread();
    return asio::make_strand(s_->ctx);
  }

  /// Keeps the threads' io_context (and its strands' service) alive.
  std::shared_ptr<const void> context() const { return s_; }

  /// While one lives, and for `linger` after the last one ended, the threads poll for calls (up
  /// to `linger` after the last call) instead of sleeping between them. It wakes a sleeping
  /// thread at once, so that the wake-up (25-50 us here) passes before the first call: a
  /// reload starts one once its library is mapped. After it, work handed to them (awake_hand:
  /// waking the background thread for the version a reload replaced) costs no wake-up.
  class burst {
  public:
    explicit burst(hook_threads& t) : s_(t.s_) {
      s_->busy.fetch_add(1);
      asio::post(s_->ctx, [] {});
    }
    burst(const burst&) = delete;
    burst& operator=(const burst&) = delete;
    ~burst() {
      s_->lingering_until.store((clock::now() + linger).time_since_epoch().count(), std::memory_order_relaxed);
      s_->busy.fetch_sub(1);
    }

  private:
    std::shared_ptr<shared_state> s_;
  };

  /// Hands work to a hook thread that is awake, polling for calls (a reload completing): there
  /// a post costs a queue push, where waking a sleeping thread costs the waker 10-40 us on this
  /// project's VMs. Holds the threads weakly; callable from any thread.
  class awake_hand {
  public:
    /// Posts `f` if a hook thread polls now, else leaves it to the caller (false). Should the
    /// threads stop before it runs, `f` runs where its handler is destroyed.
    bool operator()(std::function<void()>& f) const {
      auto s = s_.lock();
      if (!s || s->polling.load(std::memory_order_relaxed) == 0) return false;
      asio::post(s->ctx, run_once{std::move(f)});
      return true;
    }

  private:
    friend class hook_threads;
    struct run_once {
      std::function<void()> f;
      run_once(std::function<void()> g) : f(std::move(g)) {}
      run_once(run_once&&) = default;
      void operator()() { std::exchange(f, nullptr)(); }
      ~run_once() {
        if (f) f();
      }
    };
    std::weak_ptr<shared_state> s_;
  };
  awake_hand hand() const {
    awake_hand h;
    h.s_ = s_;
    return h;
  }

  /// Whether the pollers found their cores taken lately: wait, do not poll.
  bool contended() const noexcept { return contended(*s_); }

  /// Yields the core to a waiting thread; false (and the cores marked contended for
  /// `contention_memory`) if that took more than `starved`: another thread had the core for a
  /// whole time slice.
  bool yield() const noexcept { return yield(*s_); }

  /// A call was abandoned past its limit and may be holding its thread: one more thread
  /// serves the other calls. (It stays when the call returns: abandoning is rare.)
  void abandoned() {
    std::lock_guard lk(mu_);
    ++spares_;
    if (!closed_) add_thread();
  }

  /// The threads stop; those not held by an abandoned call are waited for. Once none runs
  /// any more, the jobs still suspended (a reload waiting for a plugin_ptr, a hook awaiting a
  /// timer) are destroyed without running on: what they hold goes (instances, snapshots,
  /// the context itself, which they keep). While a call blocks a thread, they stay (the
  /// thread may return into them) until that thread, the last one, exits: it destroys them.
  /// They hold the reloader's parts only weakly (hooks.hpp), so that may be after it is gone.
  void close() {
    int spares;
    {
      std::lock_guard lk(mu_);
      if (closed_) return;
      closed_ = true;
      spares = spares_;
    }
    s_->work.reset();
    s_->ctx.stop();
    bool last;
    {
      std::unique_lock lk(s_->mu);
      s_->exited.wait(lk, [&] { return s_->live <= spares; });
      s_->closed = true;
      last = last_out(*s_);
    }
    if (last) s_->ctx.destroy_pending();
  }

private:

  // Detached: a thread blocked in plugin code can never be joined. It holds the context, so
  // whatever it returns to is still there.
  void add_thread() {
    ++threads_;
    {
      std::lock_guard lk(s_->mu);
      ++s_->live;
    }
    std::thread([s = s_] {
      for (;;) {
        try {
          serve(*s);
          break;
        } catch (...) { // a plugin's own handler threw: the thread serves on
        }
      }
      bool last;
      {
        std::lock_guard lk(s->mu);
        --s->live;
        last = last_out(*s);
        s->exited.notify_all();
      }
      if (last) s->ctx.destroy_pending();
    }).detach();
  }

  // Under s.mu: whether the caller is to destroy the suspended jobs (once: after close(), by
  // whoever sees no thread left).
  static bool last_out(shared_state& s) {
    if (!s.closed || s.live > 0 || s.cleared) return false;
    s.cleared = true;
    return true;
  }

  static constexpr auto linger = std::chrono::microseconds(200);
  static constexpr auto starved = std::chrono::microseconds(500);
  static constexpr auto contention_memory = std::chrono::seconds(1);

  static bool contended(const shared_state& s) noexcept {
    return clock::now().time_since_epoch().count() < s.contended_until.load(std::memory_order_relaxed);
  }

  static bool yield(shared_state& s) noexcept {
    auto t0 = clock::now();
    std::this_thread::yield();
    auto t1 = clock::now();
    if (t1 - t0 < starved) return true;
    s.contended_until.store((t1 + contention_memory).time_since_epoch().count(), std::memory_order_relaxed);
    return false;
  }

  static void serve(shared_state& s) {
    struct counted { // in `s.polling` while polling
      shared_state& s;
      bool in = false;
      void set(bool polling) {
        if (polling != in) s.polling.fetch_add(polling ? 1 : -1, std::memory_order_relaxed);
        in = polling;
      }
      ~counted() { set(false); }
    } polling{s};
    auto last = clock::now();
    while (!s.ctx.stopped()) {
      auto now = clock::now();
      polling.set(now - last < linger && !contended(s) &&
                  (s.busy.load(std::memory_order_relaxed) > 0 ||
                   now.time_since_epoch().count() < s.lingering_until.load(std::memory_order_relaxed)));
      if (polling.in) {
        if (s.ctx.poll_one()) last = clock::now();
        else yield(s);
      } else if (s.ctx.run_one()) {
        last = clock::now();
      }
    }
  }

  std::shared_ptr<shared_state> s_ = std::make_shared<shared_state>();
  std::mutex mu_;
  int threads_ = 0; // started
  int spares_ = 0;  // started because a call was abandoned
  bool closed_ = false;
};

} // namespace hotreload::detail

#endif
