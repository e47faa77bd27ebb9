// 1,000 reloads in a row: what stays behind. RSS growth after the first reload, plugin
// copies still mapped, shadow files left after stop, file descriptors gained.
//
//   churn [--reloads N]
#include <hotreload.hpp>

#include "bench.hpp"
#include "plugins/counter_iface.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

namespace asio = boost::asio;
namespace hr = hotreload;
namespace fs = std::filesystem;
using bench::clock_type;

int main(int argc, char** argv) {
  int reloads = bench::arg(argc, argv, "--reloads", 1000);
  fs::path root = fs::temp_directory_path() / ("hotreload-churn-" + std::to_string(::getpid()));
  fs::path plugins = root / "plugins", shadow = root / "shadow";
  fs::create_directories(plugins);
  auto install = [&](int i) {
    fs::copy_file(fs::path(BENCH_PLUGIN_DIR) / (i % 2 ? "bench_counter_v2.so" : "bench_counter_v1.so"),
                  plugins / ".counter.so.tmp", fs::copy_options::overwrite_existing);
    fs::rename(plugins / ".counter.so.tmp", plugins / "counter.so");
  };
  install(0);

  asio::io_context io;
  std::vector<double> us;
  long rss_first = 0, rss_last = 0;
  int fds_first = 0, fds_last = 0;
  std::size_t mapped_last = 0;
  {
    hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher> r(
        io.get_executor(), hr::options{.plugin_dirs = {plugins}, .paths_env = {}, .shadow_dir = shadow,
                                       .verbosity = hr::log_level::warning});
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      co_await r.async_start(asio::use_awaitable);
      for (int i = 1; i <= reloads; ++i) {
        bench::wait_replaced_freed(shadow.string()); // as in reload_latency: independent reloads
        // Counted once the first reload's old version is gone, as at the end (by then the file
        // of the plugin's next copy, made ahead, is there too: one descriptor, not a leak).
        if (i == std::min(2, reloads)) {
          rss_first = bench::rss_bytes();
          fds_first = bench::open_fds();
        }
        install(i);
        auto t0 = clock_type::now();
        co_await r.async_reload_plugin("counter", asio::use_awaitable);
        us.push_back(bench::us_since(t0));
        (co_await r.async_get("counter", asio::use_awaitable))->increment();
      }
      // Let the last old version unmap (its unload is posted to the strand).
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
      bench::wait_replaced_freed(shadow.string());
      rss_last = bench::rss_bytes();
      fds_last = bench::open_fds();
      mapped_last = bench::mapped_under(shadow.string());
      co_await r.async_stop(asio::use_awaitable);
    }, [&](std::exception_ptr e) {
      io.stop();
      if (e) std::rethrow_exception(e);
    });
    io.run();
  }
  std::size_t shadow_files = 0;
  if (fs::exists(shadow))
    for (auto& e : fs::recursive_directory_iterator(shadow))
      if (e.path().extension() == ".so") ++shadow_files;
  bench::report("churn", std::to_string(reloads) + "_reloads", us,
                bench::field("rss_growth_bytes", double(rss_last - rss_first)) +
                    bench::field("mapped_copies_at_end", double(mapped_last)) +
                    bench::field("shadow_files_left", double(shadow_files)) +
                    bench::field("fd_growth", double(fds_last - fds_first)));
  fs::remove_all(root);
  return 0;
}
