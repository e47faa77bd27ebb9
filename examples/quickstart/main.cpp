// The quick start: a host loads the "english" greeter plugin, calls it, replaces its library
// with a new build while running, reloads it, and calls the new code: its count survives.
//
//   quickstart [PLUGIN_BUILD_DIR]   (default: where meson built english_v1.so and english_v2.so)
#include <hotreload.hpp>

#include "greeter.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <cstdlib>
#include <filesystem>
#include <iostream>

namespace asio = boost::asio;
namespace hr = hotreload;
namespace fs = std::filesystem;

// Replaces the plugin file the way a build should: write a new file, rename it into place.
static void install(const fs::path& built, const fs::path& plugins) {
  fs::copy_file(built, plugins / ".english.so.tmp", fs::copy_options::overwrite_existing);
  fs::rename(plugins / ".english.so.tmp", plugins / "english.so");
}

static asio::awaitable<void> demo(hr::hot_reloader<greeter>& reloader, fs::path build, fs::path plugins) {
  co_await reloader.async_start(asio::use_awaitable); // loads every plugin found
  {
    hr::plugin_ptr<greeter> g = co_await reloader.async_get("english", asio::use_awaitable);
    std::cout << g->greet("world") << "\n" << g->greet("Asio") << "\n";
  } // release the handle: a reload waits for every handle to the old version

  std::cout << "-- installing english 2.0.0 while the program runs --" << std::endl;
  install(build / "english_v2.so", plugins);
  co_await reloader.async_reload_plugin("english", asio::use_awaitable);

  hr::plugin_ptr<greeter> g = co_await reloader.async_get("english", asio::use_awaitable);
  std::cout << g->greet("world") << std::endl;
  g.reset();
  co_await reloader.async_stop(asio::use_awaitable); // teardown all, unload all
}

int main(int argc, char** argv) {
  fs::path build = argc > 1 ? fs::path(argv[1]) : fs::path(PLUGIN_BUILD_DIR);
  fs::path plugins = fs::temp_directory_path() / ("hotreload-quickstart-" + std::to_string(::getpid()));
  fs::create_directories(plugins);
  install(build / "english_v1.so", plugins);

  asio::io_context io;
  int status = EXIT_SUCCESS;
  {
    hr::hot_reloader<greeter> reloader{
        io.get_executor(), hr::options{.plugin_dirs = {plugins}, .debounce = std::chrono::milliseconds{100}}};
    asio::co_spawn(io, demo(reloader, build, plugins), [&](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        std::cerr << "quickstart failed: " << x.what() << "\n";
        status = EXIT_FAILURE;
      }
    });
    io.run();
  }
  fs::remove_all(plugins);
  return status;
}
