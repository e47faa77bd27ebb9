// How long callers wait because of reloads: request latency (try_get, or async_get while a
// reload holds the plugin, then a call) from 2 caller threads, with no reloads and with a
// reload every 20 ms, for trivial hooks and for a 1 MB state; and, for each reload, the time
// between quiesce and publish (the window in which callers wait).
//
//   blackout [--ms DURATION_PER_CASE] [--period-ms RELOAD_PERIOD]
#include <hotreload.hpp>

#include "bench.hpp"
#include "plugins/counter_iface.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <map>
#include <string>
#include <thread>

namespace asio = boost::asio;
namespace hr = hotreload;
namespace fs = std::filesystem;
using bench::clock_type;

namespace {

struct measured {
  std::vector<double> requests; // us, both callers
  std::vector<double> windows;  // us from quiesced to published, per reload
  // The window's parts, per reload: the snapshot (get_reload_state and the State policy's
  // save), the teardown, the new instance's constructor, its state restored, its
  // on_reload_async, the publication; each from the step before to its own.
  std::map<std::string, std::vector<double>> parts;
};

template <class State = hr::json_state>
measured run_case(const fs::path& dir, long state_bytes, bool reloading, int ms, int period_ms,
                  const fs::path& state_dir = {}) {
  asio::io_context io;
  hr::options opts{.plugin_dirs = {dir}, .paths_env = {}, .verbosity = hr::log_level::warning};
  if (state_bytes) opts.plugin_config = boost::json::object{{"counter", {{"state_bytes", state_bytes}}}};
  opts.state_dir = state_dir;
  hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher, hr::dll_loader, State> r(io.get_executor(), opts);
  measured m;
  std::chrono::nanoseconds quiesced{}, previous{};
  r.subscribe([&](const hr::reload_event& e) { // on the reloader's strand
    if (e.kind != hr::event_kind::reload_step) return;
    auto us = [](std::chrono::nanoseconds d) { return std::chrono::duration<double, std::micro>(d).count(); };
    const char* part = e.step == hr::reload_step::state_saved   ? "snapshot"
                       : e.step == hr::reload_step::torn_down   ? "teardown"
                       : e.step == hr::reload_step::constructed ? "construct"
                       : e.step == hr::reload_step::state_restored ? "restore"
                       : e.step == hr::reload_step::reload_hook ? "on_reload"
                       : e.step == hr::reload_step::published   ? "publish"
                                                                : nullptr;
    if (part) m.parts[part].push_back(us(e.duration - previous));
    if (part || e.step == hr::reload_step::quiesced) previous = e.duration;
    if (e.step == hr::reload_step::quiesced) quiesced = e.duration;
    if (e.step == hr::reload_step::published) m.windows.push_back(us(e.duration - quiesced));
  });
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  r.async_start(asio::use_future).get();
  std::atomic<bool> done{false};
  std::vector<std::vector<double>> lat(2);
  std::vector<std::thread> callers;
  for (auto& l : lat)
    callers.emplace_back([&r, &done, &l] {
      while (!done) {
        auto t0 = clock_type::now();
        auto p = r.try_get("counter");
        if (!p) p = r.async_get("counter", asio::use_future).get(); // waits for the reload
        p->increment();
        p.reset();
        l.push_back(bench::us_since(t0));
        std::this_thread::sleep_for(std::chrono::microseconds(50)); // a request rate, not a spin
      }
    });
  auto end = clock_type::now() + std::chrono::milliseconds(ms);
  while (clock_type::now() < end) {
    if (reloading) r.async_reload_plugin("counter", asio::use_future).get();
    std::this_thread::sleep_for(std::chrono::milliseconds(period_ms));
  }
  done = true;
  for (auto& c : callers) c.join();
  r.async_stop(asio::use_future).get();
  work.reset();
  runner.join();
  for (auto& l : lat) m.requests.insert(m.requests.end(), l.begin(), l.end());
  return m;
}

} // namespace

int main(int argc, char** argv) {
  // 10 s per case: about 470 reloads, so that the window's p99 is not its maximum.
  int ms = bench::arg(argc, argv, "--ms", 10000);
  int period = bench::arg(argc, argv, "--period-ms", 20);
  fs::path dir = fs::temp_directory_path() / ("hotreload-blackout-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::copy_file(fs::path(BENCH_PLUGIN_DIR) / "bench_counter_v1.so", dir / "counter.so");
  for (long bytes : {0L, 1L << 20}) {
    auto state = bytes ? std::string("_state_1MB") : std::string();
    auto quiet = run_case(dir, bytes, false, ms, period);
    auto busy = run_case(dir, bytes, true, ms, period);
    auto base = bench::summarize(quiet.requests);
    auto loaded = bench::summarize(busy.requests);
    bench::report("blackout", "requests_no_reloads" + state, quiet.requests);
    bench::report("blackout", "requests_reload_every_" + std::to_string(period) + "ms" + state, busy.requests,
                  bench::field("reloads", double(busy.windows.size())) +
                      bench::field("p99_ratio_to_no_reloads", loaded.p99 / base.p99) +
                      bench::field("max_ratio_to_no_reloads", loaded.max / base.max));
    bench::report("blackout", "quiesce_to_publish" + state, busy.windows);
    for (auto& [part, us] : busy.parts) bench::report("blackout", "window_part_" + part + state, us);
  }
  // The same with persistent_json_state: each snapshot is also written to a file (fsynced).
  auto quiet = run_case<hr::persistent_json_state>(dir, 0, false, ms, period, dir / "state");
  auto busy = run_case<hr::persistent_json_state>(dir, 0, true, ms, period, dir / "state");
  bench::report("blackout", "requests_no_reloads_persistent", quiet.requests);
  bench::report("blackout", "requests_reload_every_" + std::to_string(period) + "ms_persistent", busy.requests,
                bench::field("reloads", double(busy.windows.size())) +
                    bench::field("p99_ratio_to_no_reloads", bench::summarize(busy.requests).p99 /
                                                              bench::summarize(quiet.requests).p99));
  bench::report("blackout", "quiesce_to_publish_persistent", busy.windows);
  for (auto& [part, us] : busy.parts) bench::report("blackout", "window_part_" + part + "_persistent", us);
  fs::remove_all(dir);
  return 0;
}
