#ifndef HOTRELOAD_DETAIL_LINUX_IMPL_PROBE_IPP
#define HOTRELOAD_DETAIL_LINUX_IMPL_PROBE_IPP

// probe_server's coroutine: inline by default, compiled once with
// HOTRELOAD_SEPARATE_COMPILATION (<hotreload/src.hpp>).

#include <hotreload/detail/linux/probe.hpp>

namespace hotreload::detail {

HOTRELOAD_DECL awaitable<probe_result> probe_server::async_read_result(int fd, std::chrono::milliseconds within) {
  auto ex = co_await asio::this_coro::executor;
  auto pipe = std::make_shared<asio::posix::stream_descriptor>(ex, fd);
  auto silent = std::make_shared<bool>(false);
  asio::steady_timer late(ex, within); // its handler runs on this executor, as the wait does
  late.async_wait([weak = std::weak_ptr(pipe), silent](const boost::system::error_code& ec) {
    if (auto p = weak.lock(); p && !ec) {
      *silent = true;
      p->cancel();
    }
  });
  auto [ec] = co_await pipe->async_wait(asio::posix::stream_descriptor::wait_read, asio::as_tuple(asio::use_awaitable));
  late.cancel();
  if (ec && *silent) co_return probe_result{probe_result::unanswered, 0};
  if (ec) co_return probe_result{}; // `pipe` closes the descriptor
  co_return read_ready(pipe->release());
}

} // namespace hotreload::detail

#endif
