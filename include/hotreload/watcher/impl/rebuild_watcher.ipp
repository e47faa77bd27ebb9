#ifndef HOTRELOAD_WATCHER_IMPL_REBUILD_WATCHER_IPP
#define HOTRELOAD_WATCHER_IMPL_REBUILD_WATCHER_IPP

// build_runner's coroutines: inline by default, compiled once with
// HOTRELOAD_SEPARATE_COMPILATION (<hotreload/src.hpp>).

#include <hotreload/watcher/rebuild_watcher.hpp>

namespace hotreload::detail {

HOTRELOAD_DECL awaitable<void> build_runner::builds_loop(std::shared_ptr<build_runner> self) {
  do {
    self->again_ = false;
    co_await self->build();
  } while (self->again_ && !self->closed_);
  self->building_ = false;
}

HOTRELOAD_DECL awaitable<void> build_runner::build() {
  ++builds_;
  stop_reason_.clear();
  auto t0 = clock::now();
  auto before = libraries();
  report_.log(log_level::info, "Building: " + cfg_.command);
  report_.emit(reload_event{event_kind::build_started, {}, {}, {}, reload_step::none, {}, {}, cfg_.command});
  std::string error;
  auto output = std::make_shared<std::string>();
  std::shared_ptr<child_process> child = child_process::spawn(strand_, cfg_.command, cfg_.directory, error);
  int status = -1;
  if (child) {
    child_ = child;
    auto output_ended = std::make_shared<async_event>();
    asio::co_spawn(strand_, read(child, output, output_ended), asio::detached);
    asio::steady_timer limit(strand_, cfg_.timeout);
    limit.async_wait([weak = weak_from_this(), t = cfg_.timeout](boost::system::error_code ec) {
      if (auto self = weak.lock(); self && !ec) self->terminate("it ran longer than options.rebuild.timeout (" +
                                                                std::to_string(t.count()) + " ms)");
    });
    status = co_await child->wait();
    limit.cancel();
    kill_.cancel();
    // The output's end comes right after the exit, unless a process the build left behind
    // holds the pipe: then what is there is taken, and the rest is not waited for.
    co_await output_ended->wait_until(clock::now() + std::chrono::milliseconds(500));
    child->close_output(*output, output_limit);
    child_.reset();
  }
  finished(error, status, *output, clock::now() - t0);
  hand_over(before);
}

HOTRELOAD_DECL awaitable<void> build_runner::read(std::shared_ptr<child_process> child, std::shared_ptr<std::string> output,
                                                  std::shared_ptr<async_event> ended) {
  co_await child->read_output(*output, output_limit);
  ended->set();
}

} // namespace hotreload::detail

#endif
