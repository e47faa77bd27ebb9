#ifndef HOTRELOAD_DETAIL_LINUX_IMPL_CHILD_PROCESS_IPP
#define HOTRELOAD_DETAIL_LINUX_IMPL_CHILD_PROCESS_IPP

// child_process's coroutines: inline by default, compiled once with
// HOTRELOAD_SEPARATE_COMPILATION (<hotreload/src.hpp>).

#include <hotreload/detail/linux/child_process.hpp>

namespace hotreload::detail {

HOTRELOAD_DECL awaitable<void> child_process::read_output(std::string& into, std::size_t limit) {
  std::array<char, 16 * 1024> buf;
  for (;;) {
    boost::system::error_code ec;
    auto n = co_await output_.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
    keep(into, std::string_view(buf.data(), n), limit);
    if (ec) co_return;
  }
}

HOTRELOAD_DECL awaitable<int> child_process::wait() {
  int status = -1;
  if (pidfd_.is_open()) {
    boost::system::error_code ec;
    co_await pidfd_.async_wait(asio::posix::descriptor_base::wait_read, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec) status = reap(0);
  } else { // a kernel without pidfd_open (before 5.3): look every 20 ms
    asio::steady_timer t(pidfd_.get_executor());
    while ((status = reap(WNOHANG)) == -2) {
      t.expires_after(std::chrono::milliseconds(20));
      boost::system::error_code ec;
      co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  co_return status;
}

} // namespace hotreload::detail

#endif
