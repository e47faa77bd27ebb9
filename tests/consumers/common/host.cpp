// The consumer projects' host: loads plugin build 1, counts, swaps in build 2 while running,
// reloads, and checks that build 2 serves with the count. With CHANGED_LIBRARY (a plugin
// built against a changed tally.hpp, same interface_version), checks that it is refused
// and build 2 serves on.
//   host PLUGIN_DIR V2_LIBRARY [CHANGED_LIBRARY]
#include <hotreload.hpp>

#include <tally.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <filesystem>
#include <iostream>

namespace asio = boost::asio;
namespace hr = hotreload;
namespace fs = std::filesystem;

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::cerr << "usage: host PLUGIN_DIR V2_LIBRARY [CHANGED_LIBRARY]\n";
    return 2;
  }
  fs::path dir = argv[1], v2 = argv[2], changed = argc == 4 ? argv[3] : "";
  asio::io_context io;
  hr::basic_hot_reloader<tally, hr::manual_watcher> r(io.get_executor(), hr::options{.plugin_dirs = {dir}});
  auto install = [&](const fs::path& built) {
    fs::copy_file(built, dir / ".tally.tmp", fs::copy_options::overwrite_existing);
    fs::rename(dir / ".tally.tmp", dir / "tally.so");
  };
  int status = 1;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    co_await r.async_start(asio::use_awaitable);
    for (int i = 0; i < 3; ++i) (co_await r.async_get("tally", asio::use_awaitable))->add();
    install(v2);
    co_await r.async_reload_plugin("tally", asio::use_awaitable);
    auto p = co_await r.async_get("tally", asio::use_awaitable);
    int total = p->add();
    std::cout << "tally " << p->version() << ": " << total << "\n";
    if (p->version() == "2" && total == 4) status = 0;
    p.reset();
    if (!changed.empty()) {
      install(changed);
      auto [ec] = co_await r.async_reload_plugin("tally", asio::as_tuple(asio::use_awaitable));
      auto why = r.info("tally")->last_error;
      std::cout << "changed interface: " << (why ? why->message : std::string("accepted")) << "\n";
      p = co_await r.async_get("tally", asio::use_awaitable);
      bool refused = ec == hr::errc::abi_mismatch && why->message.find("tally.hpp") != std::string::npos;
      if (!refused || p->version() != "2" || p->add() != 5) status = 1;
      p.reset();
    }
    co_await r.async_stop(asio::use_awaitable);
  }, [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      std::cerr << "host failed: " << x.what() << "\n";
    }
  });
  io.run();
  return status;
}
