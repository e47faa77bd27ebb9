// The pool example: a plugin whose async hooks do real I/O. The host starts a line echo
// server on loopback; the "pool" plugin connects a pool of TCP connections to it in
// setup_async, closes them in teardown_async and opens them again in on_reload_async.
// The host reloads the plugin 100 times, echoing through it after each reload, and checks
// that no file descriptor leaked.
//
//   pool [PLUGIN_BUILD_DIR] [RELOADS]
#include <hotreload.hpp>

#include "echo_pool.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <filesystem>
#include <iostream>

#include <unistd.h>

namespace asio = boost::asio;
namespace hr = hotreload;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

static std::size_t open_fds() {
  return static_cast<std::size_t>(std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator{}));
}

// Waits until `done()` holds, at most 10 s; `changed` is cancelled at each change that may make it so.
template <class Done>
static asio::awaitable<bool> wait_until(asio::steady_timer& changed, Done done) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    changed.expires_at(deadline);
    co_await changed.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  co_return done();
}

// Echoes every line back. Counts its open connections and signals each change.
class echo_server {
public:
  explicit echo_server(asio::io_context& io) : acceptor_(io, {asio::ip::address_v4::loopback(), 0}), changed_(io) {}
  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  std::size_t connections() const { return connections_; }
  void close() { acceptor_.close(); }

  asio::awaitable<void> accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      asio::co_spawn(acceptor_.get_executor(), session(std::move(socket)), asio::detached);
    }
  }
  // Waits until `n` connections are open (at most 10 s).
  asio::awaitable<bool> wait_for_connections(std::size_t n) {
    return wait_until(changed_, [this, n] { return connections_ == n; });
  }

private:
  asio::awaitable<void> session(tcp::socket socket) {
    ++connections_;
    changed_.cancel();
    std::string buf;
    for (;;) {
      auto [ec, n] = co_await asio::async_read_until(socket, asio::dynamic_buffer(buf), '\n',
                                                     asio::as_tuple(asio::use_awaitable));
      if (ec) break; // the plugin closed the connection
      auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(buf.data(), n), asio::as_tuple(asio::use_awaitable));
      if (wec) break;
      buf.erase(0, n);
    }
    --connections_;
    changed_.cancel();
  }

  tcp::acceptor acceptor_;
  asio::steady_timer changed_;
  std::size_t connections_ = 0;
};

static asio::awaitable<bool> demo(hr::hot_reloader<echo_pool>& reloader, echo_server& server, int reloads) {
  constexpr std::size_t pool_size = 4;
  co_await reloader.async_start(asio::use_awaitable);
  auto echo_once = [&](std::string line) -> asio::awaitable<std::string> {
    hr::plugin_ptr<echo_pool> pool = co_await reloader.async_get("pool", asio::use_awaitable);
    co_return co_await pool->echo(std::move(line));
  };
  std::cout << "echo: " << co_await echo_once("hello through the pool") << "\n";
  bool ready = co_await server.wait_for_connections(pool_size);
  std::size_t fds_before = open_fds();
  std::cout << "pool open: " << server.connections() << " connections, " << fds_before << " fds in this process\n";
  // Each version replaced is unmapped in the background soon after its reload
  // (event_kind::unloaded): the descriptors are counted again once all of them are.
  int unloaded = 0;
  asio::steady_timer unmapped(co_await asio::this_coro::executor);
  auto watching = reloader.subscribe([&](const hr::reload_event& e) {
    if (e.kind != hr::event_kind::unloaded) return;
    ++unloaded;
    unmapped.cancel();
  });

  for (int i = 1; i <= reloads; ++i) {
    co_await reloader.async_reload_plugin("pool", asio::use_awaitable); // teardown closes, on_reload opens
    std::string reply = co_await echo_once("reload " + std::to_string(i));
    if (reply != "reload " + std::to_string(i)) {
      std::cout << "wrong echo after reload " << i << ": " << reply << "\n";
      co_return false;
    }
  }
  co_await wait_until(unmapped, [&] { return unloaded == reloads; });
  reloader.unsubscribe(watching);
  ready = co_await server.wait_for_connections(pool_size) && ready;
  std::size_t fds_after = open_fds();
  std::cout << "after " << reloads << " reloads: " << server.connections() << " connections, " << fds_after
            << " fds (" << (fds_after >= fds_before ? "+" : "") << static_cast<long>(fds_after - fds_before)
            << "), reloads counted: " << reloader.info("pool")->reloads << ", versions unmapped: " << unloaded << "\n";
  co_await reloader.async_stop(asio::use_awaitable); // teardown closes the pool
  bool closed = co_await server.wait_for_connections(0);
  std::cout << "after stop: " << server.connections() << " connections\n";
  server.close();
  co_return ready && closed && unloaded == reloads && fds_after == fds_before;
}

int main(int argc, char** argv) {
  fs::path build = argc > 1 ? fs::path(argv[1]) : fs::path(PLUGIN_BUILD_DIR);
  int reloads = argc > 2 ? std::stoi(argv[2]) : 100;
  fs::path plugins = fs::temp_directory_path() / ("hotreload-pool-" + std::to_string(::getpid()));
  fs::create_directories(plugins);
  fs::copy_file(build / "pool.so", plugins / "pool.so", fs::copy_options::overwrite_existing);

  asio::io_context io;
  echo_server server(io);
  bool ok = false;
  {
    hr::options opts{.plugin_dirs = {plugins}};
    opts.plugin_config["pool"] = boost::json::object{{"port", server.port()}, {"size", 4}};
    opts.verbosity = hr::log_level::warning; // 100 reloads: only problems are logged
    hr::hot_reloader<echo_pool> reloader(io.get_executor(), opts);
    asio::co_spawn(io, server.accept(), asio::detached);
    asio::co_spawn(io, demo(reloader, server, reloads), [&](std::exception_ptr e, bool result) {
      ok = result;
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        std::cout << "pool example failed: " << x.what() << "\n";
      }
      server.close();
    });
    io.run();
  }
  fs::remove_all(plugins);
  std::cout << (ok ? "no leak: every connection closed, no fd left behind\n" : "LEAK or failure\n");
  return ok ? 0 : 1;
}
