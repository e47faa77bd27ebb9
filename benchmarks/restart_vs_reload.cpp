// The original design's table, on this library: 5 independent plugins with 50 ms of async
// work in each lifecycle hook. Compares a full process restart (a fresh process loads all 5
// and waits until they are ready), reloading them one by one, and one parallel batch.
//
//   restart_vs_reload [--trials N] [--plugins DIR]
//
// Prints one JSON object per line on stdout, a table on stderr.
#include <hotreload.hpp>

#include "bench.hpp"
#include "plugins/counter_iface.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace asio = boost::asio;
namespace hr = hotreload;
namespace fs = std::filesystem;
using bench::clock_type;

namespace {

const std::vector<std::string> names = {"slow1", "slow2", "slow3", "slow4", "slow5"};

using reloader = hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher>;

hr::options options_for(const fs::path& dir) {
  return hr::options{.plugin_dirs = {dir}, .paths_env = {}, .verbosity = hr::log_level::warning};
}

// A private plugin directory with the five plugins.
fs::path make_plugin_dir(const fs::path& built) {
  auto dir = fs::temp_directory_path() / ("hotreload-bench-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (std::size_t i = 1; i <= names.size(); ++i)
    fs::copy_file(built / ("bench_slow" + std::to_string(i) + ".so"), dir / ("slow" + std::to_string(i) + ".so"),
                  fs::copy_options::overwrite_existing);
  return dir;
}

// The child of the restart case: load everything, say "ready", exit.
int child(const fs::path& dir) {
  asio::io_context io;
  int status = 1;
  {
    reloader r(io.get_executor(), options_for(dir));
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      co_await r.async_start(asio::use_awaitable);
      std::fputs("ready\n", stdout);
      std::fflush(stdout);
      status = 0;
      io.stop();
    }, asio::detached);
    io.run();
  }
  std::_Exit(status); // a restarted server would keep running; only readiness is measured
}

double restart_ms(const char* self, const fs::path& dir) {
  int out[2];
  if (::pipe(out) != 0) return -1;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&fa, out[0]);
  std::string d = dir.string();
  char* argv[] = {const_cast<char*>(self), const_cast<char*>("--child"), d.data(), nullptr};
  auto t0 = clock_type::now();
  pid_t pid;
  if (posix_spawn(&pid, self, &fa, nullptr, argv, environ) != 0) return -1;
  ::close(out[1]);
  char buf[16];
  auto n = ::read(out[0], buf, sizeof buf);
  auto t = clock_type::now() - t0;
  ::close(out[0]);
  int st;
  ::waitpid(pid, &st, 0);
  posix_spawn_file_actions_destroy(&fa);
  return n > 0 ? std::chrono::duration<double, std::milli>(t).count() : -1;
}

void report(const char* kase, const std::vector<double>& ms, double baseline_ms) {
  std::vector<double> us;
  for (double m : ms) us.push_back(m * 1000);
  auto p50 = bench::summarize(ms).p50;
  bench::report("restart_vs_reload", kase, us, bench::field("ms", p50) + bench::field("ratio_to_restart", p50 / baseline_ms));
}

} // namespace

int main(int argc, char** argv) {
  int trials = 10;
  fs::path built = BENCH_PLUGIN_DIR;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--child") && i + 1 < argc) return child(argv[i + 1]);
    if (!std::strcmp(argv[i], "--trials") && i + 1 < argc) trials = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--plugins") && i + 1 < argc) built = argv[++i];
  }
  auto dir = make_plugin_dir(built);
  auto self = fs::canonical("/proc/self/exe").string();

  std::vector<double> restart, sequential, batch;
  for (int t = 0; t < trials; ++t) restart.push_back(restart_ms(self.c_str(), dir));

  std::vector<double> overlapped; // a batch with options.overlap_teardown
  for (bool overlap : {false, true}) {
    asio::io_context io;
    auto opts = options_for(dir);
    opts.overlap_teardown = overlap;
    reloader r(io.get_executor(), opts);
    asio::co_spawn(io, [&]() -> asio::awaitable<void> {
      co_await r.async_start(asio::use_awaitable);
      for (int t = 0; t < trials; ++t) {
        auto t0 = clock_type::now();
        if (!overlap) {
          for (auto& n : names) co_await r.async_reload_plugin(n, asio::use_awaitable);
          sequential.push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
          t0 = clock_type::now();
        }
        co_await r.async_reload_plugins(names, asio::use_awaitable);
        (overlap ? overlapped : batch).push_back(std::chrono::duration<double, std::milli>(clock_type::now() - t0).count());
      }
      co_await r.async_stop(asio::use_awaitable);
    }, asio::detached);
    io.run();
  }
  fs::remove_all(dir);

  if (std::find(restart.begin(), restart.end(), -1.0) != restart.end() || sequential.size() != std::size_t(trials) ||
      overlapped.size() != std::size_t(trials)) {
    std::fprintf(stderr, "restart_vs_reload: a case failed\n");
    return 1;
  }
  auto base = bench::summarize(restart).p50;
  std::fprintf(stderr, "5 plugins, 50 ms of async work per hook, %d trials:\n", trials);
  report("full_restart", restart, base);
  report("sequential_reload", sequential, base);
  report("parallel_batch_reload", batch, base);
  report("parallel_batch_reload_overlap_teardown", overlapped, base);
  return 0;
}
