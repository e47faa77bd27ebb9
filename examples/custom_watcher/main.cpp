// A Watcher policy written by a user: a daemon that picks up new plugin builds when it gets
// SIGHUP, not whenever a file changes. The policy reports a rescan; the reloader then
// reloads exactly the plugins whose library changed and loads the new ones.
//
// Composed like this, with the other two policies left at their defaults:
//   hr::basic_hot_reloader<greeter, sighup_watcher> reloader{io.get_executor(), options};
//
// A policy that misses a member is refused at compile time with what to write. Without
// stop(), for example, g++ says:
//   error: static assertion failed: Watcher policy: needs a member `void stop()`
#include <hotreload.hpp>

#include "../quickstart/greeter.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <csignal>
#include <iostream>

namespace asio = boost::asio;
namespace hr = hotreload;
namespace fs = std::filesystem;

class sighup_watcher {
public:
  explicit sighup_watcher(asio::any_io_executor ex) : signals_(std::move(ex)) {}

  hr::error_info start(const std::vector<fs::path>& dirs, hr::change_handler on_change) {
    dirs_ = dirs;
    handler_ = std::move(on_change);
    boost::system::error_code ec;
    signals_.add(SIGHUP, ec);
    if (ec) return {make_error_code(hr::errc::bad_plugin_dir), {}, "cannot catch SIGHUP: " + ec.message()};
    wait();
    return {};
  }

  void stop() {
    boost::system::error_code ec;
    signals_.cancel(ec);
    signals_.clear(ec);
    handler_ = nullptr;
  }

private:
  void wait() {
    signals_.async_wait([this](boost::system::error_code ec, int) {
      if (ec || !handler_) return;
      std::vector<hr::file_change> rescan;
      for (auto& d : dirs_) rescan.push_back({hr::change_kind::rescan, d});
      handler_(std::move(rescan));
      wait();
    });
  }

  asio::signal_set signals_;
  std::vector<fs::path> dirs_;
  hr::change_handler handler_;
};

static_assert(hr::watcher<sighup_watcher>);

using reloader_type = hr::basic_hot_reloader<greeter, sighup_watcher>;

static void install(const fs::path& built, const fs::path& plugins) {
  fs::copy_file(built, plugins / ".english.so.tmp", fs::copy_options::overwrite_existing);
  fs::rename(plugins / ".english.so.tmp", plugins / "english.so");
}

static asio::awaitable<void> demo(reloader_type& reloader, fs::path build, fs::path plugins) {
  co_await reloader.async_start(asio::use_awaitable);
  std::cout << (co_await reloader.async_get("english", asio::use_awaitable))->greet("world") << std::endl;

  // A new build lands; nothing happens until the signal.
  install(build / "english_v2.so", plugins);
  std::cout << (co_await reloader.async_get("english", asio::use_awaitable))->greet("world") << std::endl;

  asio::steady_timer reloaded(co_await asio::this_coro::executor, asio::steady_timer::time_point::max());
  auto id = reloader.subscribe([&](const hr::reload_event& e) {
    if (e.kind == hr::event_kind::reloaded) reloaded.cancel();
  });
  std::cout << "-- kill -HUP " << ::getpid() << " --" << std::endl;
  ::kill(::getpid(), SIGHUP);
  co_await reloaded.async_wait(asio::as_tuple(asio::use_awaitable));
  reloader.unsubscribe(id);

  std::cout << (co_await reloader.async_get("english", asio::use_awaitable))->greet("world") << std::endl;
  co_await reloader.async_stop(asio::use_awaitable);
}

int main(int argc, char** argv) {
  fs::path build = argc > 1 ? fs::path(argv[1]) : fs::path(PLUGIN_BUILD_DIR);
  fs::path plugins = fs::temp_directory_path() / ("hotreload-sighup-" + std::to_string(::getpid()));
  fs::create_directories(plugins);
  install(build / "english_v1.so", plugins);

  asio::io_context io;
  int status = EXIT_FAILURE;
  {
    reloader_type reloader{io.get_executor(), hr::options{.plugin_dirs = {plugins}}};
    asio::co_spawn(io, demo(reloader, build, plugins), [&](std::exception_ptr e) {
      try {
        if (e) std::rethrow_exception(e);
        status = EXIT_SUCCESS;
      } catch (const std::exception& x) {
        std::cerr << "custom_watcher failed: " << x.what() << "\n";
      }
    });
    io.run();
  }
  fs::remove_all(plugins);
  return status;
}
