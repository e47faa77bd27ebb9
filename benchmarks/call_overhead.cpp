// What a call into a plugin costs: a trivial virtual method (count()) called through a raw
// pointer, a held plugin_ptr, try_get + call per request, and async_get + call per request
// in a coroutine; with the io_context on 1 and on 2 threads. Ratios to the raw call.
//
//   call_overhead [--calls N] [--rounds N]
#include <hotreload.hpp>

#include "bench.hpp"
#include "plugins/counter_iface.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <thread>

namespace asio = boost::asio;
namespace hr = hotreload;
namespace fs = std::filesystem;
using bench::clock_type;

namespace {

using reloader = hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher>;

// Microseconds per call of `body(calls)`, as the median of `rounds` rounds, run on `threads` threads
// at once (each thread making `calls` calls; the figure is wall time / all calls).
template <class Body>
std::vector<double> ns_per_call(int threads, int rounds, long calls, Body body) {
  std::vector<double> out;
  for (int r = 0; r < rounds; ++r) {
    std::vector<std::thread> pool;
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    auto t0 = clock_type::now();
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&] {
        ++ready;
        while (!go) std::this_thread::yield();
        body(calls);
      });
    while (ready < threads) std::this_thread::yield();
    t0 = clock_type::now();
    go = true;
    for (auto& th : pool) th.join();
    out.push_back(bench::us_since(t0) / (double(calls) * threads));
  }
  return out;
}

} // namespace

int main(int argc, char** argv) {
  long calls = bench::arg(argc, argv, "--calls", 2'000'000);
  int rounds = bench::arg(argc, argv, "--rounds", 7);
  fs::path dir = fs::temp_directory_path() / ("hotreload-calls-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(fs::path(BENCH_PLUGIN_DIR) / "bench_counter_v1.so", dir / "counter.so");

  asio::io_context io;
  reloader r(io.get_executor(), hr::options{.plugin_dirs = {dir}, .paths_env = {}, .verbosity = hr::log_level::warning});
  // The plugin keeps a timer armed, so io.run() would not return by itself: each phase
  // stops the io_context when it is done.
  asio::co_spawn(io, r.async_start(asio::use_awaitable), [&](std::exception_ptr) { io.stop(); });
  io.run();
  io.restart();
  auto held = r.try_get("counter");
  if (!held) {
    std::fprintf(stderr, "call_overhead: the plugin did not load\n");
    return 1;
  }
  test::counter_iface* raw = held.get();
  std::atomic<long> sink{0};

  for (int threads : {1, 2}) {
    auto suffix = "_" + std::to_string(threads) + "_thread" + (threads > 1 ? "s" : "");
    auto raw_ns = ns_per_call(threads, rounds, calls, [&](long n) {
      long s = 0;
      for (long i = 0; i < n; ++i) s += raw->count();
      sink += s;
    });
    auto base = bench::summarize(raw_ns).p50;
    auto ratio = [&](const std::vector<double>& v) {
      return bench::field("p50_ns", bench::summarize(v).p50 * 1000) + bench::field("ratio_to_raw", bench::summarize(v).p50 / base);
    };
    std::string unit; // every figure is per call
    bench::report("call_overhead", "raw_pointer" + suffix, raw_ns, unit + ratio(raw_ns));
    auto held_ns = ns_per_call(threads, rounds, calls, [&](long n) {
      auto p = held; // each thread its own copy, as a request handler would have
      long s = 0;
      for (long i = 0; i < n; ++i) s += p->count();
      sink += s;
    });
    bench::report("call_overhead", "held_plugin_ptr" + suffix, held_ns, unit + ratio(held_ns));
    auto try_ns = ns_per_call(threads, rounds, calls / 4, [&](long n) {
      long s = 0;
      for (long i = 0; i < n; ++i) s += r.try_get("counter")->count();
      sink += s;
    });
    bench::report("call_overhead", "try_get_and_call" + suffix, try_ns, unit + ratio(try_ns));
    // async_get + call: `threads` io threads, one coroutine per thread making the calls.
    std::vector<double> async_ns;
    long async_calls = calls / 40;
    for (int round = 0; round < rounds; ++round) {
      io.restart();
      auto t0 = clock_type::now();
      std::atomic<int> running{threads};
      for (int t = 0; t < threads; ++t)
        asio::co_spawn(io, [&]() -> asio::awaitable<void> {
          long s = 0;
          for (long i = 0; i < async_calls; ++i) s += (co_await r.async_get("counter", asio::use_awaitable))->count();
          sink += s;
        }, [&](std::exception_ptr) {
          if (--running == 0) io.stop();
        });
      std::vector<std::thread> pool;
      for (int t = 1; t < threads; ++t) pool.emplace_back([&] { io.run(); });
      io.run();
      for (auto& th : pool) th.join();
      async_ns.push_back(bench::us_since(t0) / (double(async_calls) * threads));
    }
    bench::report("call_overhead", "async_get_and_call" + suffix, async_ns, unit + ratio(async_ns));
  }
  held.reset();
  io.restart();
  asio::co_spawn(io, r.async_stop(asio::use_awaitable), [&](std::exception_ptr) { io.stop(); });
  io.run();
  fs::remove_all(dir);
  return sink.load() == -1;
}
