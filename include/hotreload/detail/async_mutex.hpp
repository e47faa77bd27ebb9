#ifndef HOTRELOAD_DETAIL_ASYNC_MUTEX_HPP
#define HOTRELOAD_DETAIL_ASYNC_MUTEX_HPP

#include <hotreload/config.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <deque>
#include <memory>

namespace hotreload::detail {

/// A FIFO mutex for coroutines that all run on one strand (so it needs no atomics).
/// Waiters park on a timer that never expires; unlock() hands ownership to the first one.
class async_mutex {
public:
  template <class Executor>
  awaitable<void> lock(const Executor& ex) {
    if (!locked_) {
      locked_ = true;
      co_return;
    }
    auto t = std::make_shared<boost::asio::steady_timer>(ex, boost::asio::steady_timer::time_point::max());
    waiters_.push_back(t);
    co_await t->async_wait(boost::asio::as_tuple(boost::asio::use_awaitable));
  }

  void unlock() {
    if (waiters_.empty()) {
      locked_ = false;
      return;
    }
    auto t = std::move(waiters_.front());
    waiters_.pop_front();
    t->cancel();
  }

private:
  bool locked_ = false;
  std::deque<std::shared_ptr<boost::asio::steady_timer>> waiters_;
};

/// Unlocks on scope exit, also when a suspended coroutine is destroyed.
struct unlock_on_exit {
  async_mutex& m;
  ~unlock_on_exit() { m.unlock(); }
};

} // namespace hotreload::detail

#endif
