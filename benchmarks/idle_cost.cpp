// What a started reloader costs while nothing changes: CPU time (getrusage) and wake-ups
// (voluntary context switches) of the whole process over a quiet period, with 1,000 files
// in the watched directories (plus one plugin), for the inotify and the polling watcher
// (at its default interval). Baseline in the same run: an io_context with no reloader,
// idle for the same time.
//
//   idle_cost [--seconds 10] [--files 1000]
#include <hotreload.hpp>

#include "bench.hpp"
#include "plugins/counter_iface.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <fstream>
#include <optional>
#include <type_traits>

#include <sys/resource.h>

namespace asio = boost::asio;
namespace hr = hotreload;
namespace fs = std::filesystem;

struct usage {
  double cpu_us;
  long wakeups;
};

static usage now() {
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  auto us = [](timeval t) { return t.tv_sec * 1e6 + t.tv_usec; };
  return {us(ru.ru_utime) + us(ru.ru_stime), ru.ru_nvcsw + ru.ru_nivcsw};
}

// Starts a reloader (none for the baseline), then runs the io_context for `seconds` of
// quiet; reports the CPU time and wake-ups of the quiet period only.
template <class Reloader>
static void measure(const char* kase, int seconds, int files, const hr::options& opts) {
  asio::io_context io;
  usage before{}, after{};
  {
    std::optional<std::conditional_t<std::is_void_v<Reloader>, int, Reloader>> r;
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      if constexpr (!std::is_void_v<Reloader>) {
        r.emplace(io.get_executor(), opts);
        co_await r->async_start(asio::use_awaitable);
      }
      before = now();
      asio::steady_timer quiet(io, std::chrono::seconds(seconds)); // the only wake-up we cause
      co_await quiet.async_wait(asio::use_awaitable);
      after = now();
      if constexpr (!std::is_void_v<Reloader>) co_await r->async_stop(asio::use_awaitable);
    }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
    io.run();
  }
  double cpu = after.cpu_us - before.cpu_us;
  long wakeups = after.wakeups - before.wakeups;
  std::vector<double> sample{cpu};
  bench::report("idle_cost", kase, sample,
                bench::field("seconds", seconds) + bench::field("files", files) + bench::field("cpu_us", cpu) +
                    bench::field("cpu_percent", cpu / (seconds * 1e4)) +
                    bench::field("wakeups", static_cast<double>(wakeups)));
}

int main(int argc, char** argv) {
  int seconds = bench::arg(argc, argv, "--seconds", 10);
  int files = bench::arg(argc, argv, "--files", 1000);
  fs::path root = fs::temp_directory_path() / ("hotreload-idle-" + std::to_string(::getpid()));
  fs::path plugins = root / "plugins";
  // 1,000 files in 100 directories (data files next to the plugins: the polling watcher
  // looks at every one of them on each scan), plus one plugin.
  for (int i = 0; i < files; ++i) {
    fs::path dir = plugins / ("d" + std::to_string(i % 100));
    fs::create_directories(dir);
    std::ofstream(dir / ("data" + std::to_string(i) + ".json")) << "{}";
  }
  fs::copy_file(fs::path(BENCH_PLUGIN_DIR) / "bench_counter_v1.so", plugins / "counter.so");
  hr::options opts{.plugin_dirs = {plugins}, .paths_env = {}, .shadow_dir = root / "shadow",
                   .verbosity = hr::log_level::warning};

  measure<void>("baseline_idle_io_context", seconds, 0, opts);
  measure<hr::basic_hot_reloader<test::counter_iface, hr::inotify_watcher>>("inotify", seconds, files, opts);
  measure<hr::basic_hot_reloader<test::counter_iface, hr::polling_watcher>>("polling_100ms", seconds, files, opts);
  fs::remove_all(root);
}
