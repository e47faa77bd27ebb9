// Policies written by a user:
// - a Watcher: a daemon that picks up new plugin builds when it gets SIGHUP, not whenever
//   a file changes. It reports a rescan; the reloader then reloads exactly the plugins
//   whose library changed and loads the new ones;
// - a State policy that wraps the default one and refuses snapshots over a size limit, so
//   one plugin's runaway state cannot stall every reload (the reload fails with
//   errc::state_store_failed and the old version keeps serving, its state intact).
//
// Composed like this, with the Loader left at its default:
//   hr::basic_hot_reloader<greeter, sighup_watcher, hr::dll_loader, bounded_state> reloader{...};
//
// A policy that misses a member is refused at compile time with what to write. Without
// stop(), for example, g++ says:
//   error: static assertion failed: Watcher policy: needs a member `void stop()`
// and without `preserves_state`:
//   error: static assertion failed: State policy: needs `static constexpr bool
//   preserves_state = true;` (or false)
#include <hotreload.hpp>

#include "../quickstart/greeter.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/json/serialize.hpp>

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

// Keeps snapshots like the default json_state, up to `limit` bytes of JSON each.
class bounded_state {
public:
  static constexpr bool preserves_state = true;
  std::size_t limit = 64 * 1024;
  std::size_t largest = 0; // the largest snapshot stored so far, in bytes

  hr::error_info save(std::string_view plugin, const boost::json::object& snapshot) {
    std::size_t size = boost::json::serialize(snapshot).size();
    if (size > limit)
      return {make_error_code(hr::errc::state_store_failed), std::string(plugin),
              "the state of plugin '" + std::string(plugin) + "' is " + std::to_string(size) +
                  " bytes of JSON, over the limit of " + std::to_string(limit) +
                  "; make get_reload_state return less, or raise bounded_state::limit"};
    largest = std::max(largest, size);
    return memory_.save(plugin, snapshot);
  }
  std::optional<boost::json::object> load(std::string_view plugin) const { return memory_.load(plugin); }

private:
  hr::json_state memory_;
};

static_assert(hr::state_store<bounded_state>);

using reloader_type = hr::basic_hot_reloader<greeter, sighup_watcher, hr::dll_loader, bounded_state>;

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
  std::cout << "largest snapshot: " << reloader.state().largest << " bytes" << std::endl;

  // The same reload with a limit the snapshot exceeds: refused, the old version serves on.
  reloader.state().limit = 8;
  auto [ec] = co_await reloader.async_reload_plugin("english", asio::as_tuple(asio::use_awaitable));
  std::cout << "with an 8-byte limit: " << reloader.info("english")->last_error->message << std::endl;
  std::cout << (co_await reloader.async_get("english", asio::use_awaitable))->greet("world") << std::endl;
  if (ec != hr::errc::state_store_failed) throw std::runtime_error("the bounded state did not refuse the snapshot");
  reloader.state().limit = 64 * 1024;
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
        std::cerr << "custom_policy failed: " << x.what() << "\n";
      }
    });
    io.run();
  }
  fs::remove_all(plugins);
  return status;
}
