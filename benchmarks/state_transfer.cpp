// Reload time with a JSON state of 1 KB, 1 MB and 10 MB carried from the old version to the
// new one (get_reload_state -> snapshot -> set_reload_state), against no state.
//
//   state_transfer [--trials N]
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
  int trials = bench::arg(argc, argv, "--trials", 30);
  fs::path dir = fs::temp_directory_path() / ("hotreload-state-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(fs::path(BENCH_PLUGIN_DIR) / "bench_counter_v1.so", dir / "counter.so");
  std::vector<double> baseline;
  for (long bytes : {0L, 1L << 10, 1L << 20, 10L << 20}) {
    asio::io_context io;
    std::vector<double> us;
    hr::options opts{.plugin_dirs = {dir}, .paths_env = {}, .verbosity = hr::log_level::warning};
    if (bytes) opts.plugin_config = boost::json::object{{"counter", {{"state_bytes", bytes}}}};
    {
      hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher> r(io.get_executor(), opts);
      asio::co_spawn(io, [&]() -> asio::awaitable<void> {
        co_await r.async_start(asio::use_awaitable);
        for (int t = 0; t < trials; ++t) {
          auto t0 = clock_type::now();
          co_await r.async_reload_plugin("counter", asio::use_awaitable);
          us.push_back(bench::us_since(t0));
        }
        co_await r.async_stop(asio::use_awaitable);
      }, [&](std::exception_ptr e) {
        io.stop();
        if (e) std::rethrow_exception(e);
      });
      io.run();
    }
    if (!bytes) baseline = us;
    auto base = bench::summarize(baseline).p50;
    bench::report("state_transfer", bytes ? std::to_string(bytes) + "_bytes" : std::string("no_state"), us,
                  bench::field("state_bytes", double(bytes)) + bench::field("ratio_to_no_state", bench::summarize(us).p50 / base));
  }
  fs::remove_all(dir);
  return 0;
}
