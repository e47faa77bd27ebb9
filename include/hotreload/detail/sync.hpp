#ifndef HOTRELOAD_DETAIL_SYNC_HPP
#define HOTRELOAD_DETAIL_SYNC_HPP

// Waiting on a strand: one event primitive, and what is built from it (a FIFO mutex, a join
// of concurrent tasks, a DAG runner). Everything here is strand-confined: the objects are
// touched only by coroutines and handlers of one strand, so they need no atomics. Another
// thread wakes an event by posting set() to the strand.

#include <hotreload/config.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/defer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <chrono>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace hotreload::detail {

using strand_t = asio::strand<asio::any_io_executor>;

/// The reloader's strand, for threads that may outlive the reloader and its io_context (the
/// background thread that unmaps old versions, a hook thread whose abandoned call returns
/// late): they post through this and never hold a strand of their own, since destroying a
/// strand's last copy locks its io_context's strand service, which is freed memory once the
/// io_context is gone (a hang in a mutex found "held" there, or a crash). The reloader closes
/// it when it goes, on its owner's thread, while the io_context still lives.
class strand_mailbox {
public:
  explicit strand_mailbox(strand_t s) : strand_(std::make_unique<strand_t>(std::move(s))) {}

  /// Posts `f` to the strand; drops it once closed.
  template <class F>
  void post(F&& f) {
    std::lock_guard lk(mu_);
    if (strand_) asio::post(*strand_, std::forward<F>(f));
  }

  /// Runs `f` on the program's executor (not the strand), in a handler that cannot start
  /// before the handler now running on this thread, if it is one of that executor's, has
  /// returned (asio::defer queues it on this thread until then). Once closed: false, and `f`
  /// is left to the caller.
  template <class F>
  bool defer(F&& f) {
    std::lock_guard lk(mu_);
    if (!strand_) return false;
    asio::defer(strand_->get_inner_executor(), std::forward<F>(f));
    return true;
  }

  void close() {
    std::unique_ptr<strand_t> gone;
    std::lock_guard lk(mu_);
    gone = std::move(strand_);
  }

private:
  std::mutex mu_;
  std::unique_ptr<strand_t> strand_;
};
using clock = std::chrono::steady_clock;

/// `now + d`, saturated (a limit of "forever" must not overflow).
inline clock::time_point deadline_after(std::chrono::milliseconds d) {
  auto now = clock::now();
  return d >= std::chrono::duration_cast<std::chrono::milliseconds>(clock::time_point::max() - now)
             ? clock::time_point::max()
             : now + d;
}

/// `d` in whole milliseconds, rounded (for messages).
inline std::string whole_ms(clock::duration d) {
  using namespace std::chrono;
  return std::to_string(duration_cast<milliseconds>(d + microseconds(500)).count()) + " ms";
}

/// A manual-reset event: set() wakes every waiter, and later waits return at once.
class async_event {
public:
  bool is_set() const noexcept { return set_; }

  void set() {
    set_ = true;
    for (auto& t : waiters_) t->cancel();
    waiters_.clear();
  }

  /// Until set() or `deadline`, whichever comes first; true if set.
  HOTRELOAD_DECL awaitable<bool> wait_until(clock::time_point deadline);
  awaitable<bool> wait() { return wait_until(clock::time_point::max()); }

private:
  bool set_ = false;
  std::vector<std::shared_ptr<asio::steady_timer>> waiters_; // the timer each waiter sleeps on
};

/// A FIFO mutex for coroutines: unlock() hands ownership to the first waiter.
class async_mutex {
public:
  HOTRELOAD_DECL awaitable<void> lock();

  void unlock() {
    if (waiters_.empty()) {
      locked_ = false;
      return;
    }
    auto turn = std::move(waiters_.front());
    waiters_.pop_front();
    turn->set();
  }

private:
  bool locked_ = false;
  std::deque<std::shared_ptr<async_event>> waiters_;
};

/// Runs every task concurrently on `strand` and completes when all have finished; then
/// rethrows the first exception, if any.
HOTRELOAD_DECL awaitable<void> join(strand_t strand, std::vector<awaitable<void>> tasks);

using dag_step = std::function<awaitable<void>(std::size_t)>;

/// One node of run_dag: waits for its predecessors, runs, and tells its successors (also
/// when it throws).
HOTRELOAD_DECL awaitable<void> dag_node(std::vector<async_event>& done, const std::vector<std::size_t>& preds,
                                        const dag_step& fn, std::size_t i);

/// Runs fn(i) for every node i once fn(p) has finished for every p in preds[i]; nodes with no
/// path between them run concurrently on the strand (their awaits overlap in time).
HOTRELOAD_DECL awaitable<void> run_dag(strand_t strand, const std::vector<std::vector<std::size_t>>& preds, dag_step fn);

} // namespace hotreload::detail

#ifndef HOTRELOAD_SEPARATE_COMPILATION
#include <hotreload/detail/impl/sync.ipp>
#endif

#endif
