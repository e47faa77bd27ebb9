// Time from a rebuilt library landing (rename into the watched directory) to the first
// successful call that returns the new version; against the floor measured in the same run:
// shadow copy + dlopen(RTLD_NOW) + symbol lookup + factory + dlclose, by hand.
//
//   reload_latency [--trials N] [--polling-trials N] [--grow-mb MB]
//                  [--only probe,inotify,spinning,polling,manual,fresh,unprobed,grown]
// (the floor is always measured: every figure is given as a ratio to it)
#include <hotreload.hpp>

#include "bench.hpp"
#include "plugins/counter_iface.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <map>
#include <thread>

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

namespace asio = boost::asio;
namespace hr = hotreload;
namespace fs = std::filesystem;
using bench::clock_type;

namespace {

const fs::path built = BENCH_PLUGIN_DIR;

struct sandbox {
  fs::path root = fs::temp_directory_path() / ("hotreload-latency-" + std::to_string(::getpid()));
  fs::path plugins = root / "plugins", shadow = root / "shadow";
  sandbox() {
    fs::create_directories(plugins);
    install(0);
  }
  ~sandbox() { fs::remove_all(root); }
  // A new build, written next to its destination, then renamed into place (land()).
  void stage(int i) const {
    fs::copy_file(built / (i % 2 ? "bench_counter_v2.so" : "bench_counter_v1.so"), plugins / ".counter.so.tmp",
                  fs::copy_options::overwrite_existing);
  }
  void land() const { fs::rename(plugins / ".counter.so.tmp", plugins / "counter.so"); }
  void install(int i) const {
    stage(i);
    land();
  }
  void settle() const {
    int fd = ::open((plugins / "counter.so").c_str(), O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
      ::fdatasync(fd);
      ::close(fd);
    }
  }
  hr::options opts() const {
    return hr::options{.plugin_dirs = {plugins}, .debounce = std::chrono::milliseconds(0), .paths_env = {},
                       .shadow_dir = shadow, .verbosity = hr::log_level::warning};
  }
};

using parts_t = std::map<std::string, std::vector<double>>;

// The floor: what any reloader must do at least, done by hand; `parts` gets each part. The
// issue's floor copies the same library every time (long in the page cache); with
// `fresh_build`, each trial first lands and writes out a new build, as every reload case
// does before it is timed (a copy of a file written just before costs its dlopen more).
std::vector<double> floor_us(int trials, const sandbox& box, parts_t& parts, bool fresh_build = false) {
  std::vector<double> us;
  asio::io_context io;
  fs::create_directories(box.shadow / "floor");
  for (int t = 0; t < trials; ++t) {
    auto image = box.shadow / "floor" / ("counter." + std::to_string(t) + ".so");
    if (fresh_build) {
      box.install(t);
      box.settle();
    }
    auto t0 = clock_type::now(), lap = t0;
    auto part = [&](const char* name) {
      parts[name].push_back(bench::us_since(lap));
      lap = clock_type::now();
    };
    if (hr::detail::copy_file_private(box.plugins / "counter.so", image)) return {};
    part("copy");
    void* h = ::dlopen(image.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) return {};
    auto* tag = static_cast<const hr::abi_tag*>(::dlsym(h, "hotreload_abi_tag"));
    auto* meta = static_cast<const char*>(::dlsym(h, "hotreload_metadata"));
    auto* create = reinterpret_cast<hr::detail::create_fn*>(::dlsym(h, "hotreload_create"));
    if (!tag || !meta || !create) return {};
    part("dlopen_dlsym");
    std::string why;
    hr::plugin_context ctx("counter", io.get_executor(), hr::plugin_logger({}, "counter"), {}, {});
    auto* p = static_cast<test::counter_iface*>(create(ctx, why));
    p->count();
    delete p;
    part("factory_call_delete");
    ::dlclose(h);
    ::unlink(image.c_str());
    part("dlclose_unlink");
    us.push_back(bench::us_since(t0));
  }
  return us;
}

// The probe alone (options.probe_in_child): a shadow copy loaded in a probe worker, from
// the request to the answer; by a worker that is reused (options.probe_reuse, `reused`) and
// by a fresh worker per probe (`fresh`, probe_reuse 1), one after the other in the same run.
// Not alternately: the exit of the fresh worker just before (its address space torn down on
// the other core) made the reused worker's probe twice as long on this project's 2-core VM
// (733-746 us at p50 against 358-420 us).
bool probe_us(int trials, const sandbox& box, std::vector<double>& reused, std::vector<double>& fresh) {
  auto worker = hr::detail::probe_server::start(hr::options{}.probe_reuse);
  auto forking = hr::detail::probe_server::start(1);
  if (!worker || !forking) return false;
  auto image = box.shadow / "floor" / "probed.so";
  if (hr::detail::copy_file_private(box.plugins / "counter.so", image)) return false;
  for (int t = 0; t < 2 * trials; ++t) {
    auto& server = t >= trials ? *forking : *worker;
    auto t0 = clock_type::now();
    auto result = hr::detail::probe_server::read_result(server.request(image, std::chrono::seconds(10)),
                                                           hr::detail::answer_limit(std::chrono::seconds(10)));
    if (result.kind != hr::detail::probe_result::loaded) return false;
    (t >= trials ? fresh : reused).push_back(bench::us_since(t0));
  }
  ::unlink(image.c_str());
  return true;
}

using steps_t = std::map<hr::reload_step, std::vector<double>>;

// Renames new builds into place `trials` times and waits for the new code to answer.
// `steps` and `unload` (until the old version is unmapped) count from the reload's start.
// With `spin`, a thread calls the plugin without pause meanwhile (try_get, then a call), as
// a busy server's would: one of the two cores is taken.
template <class Watcher>
std::vector<double> watched_us(int trials, const sandbox& box, steps_t* steps, std::vector<double>* detect,
                               std::vector<double>* rename_us = nullptr, std::vector<double>* unload = nullptr,
                               bool spin = false) {
  std::vector<double> us;
  asio::io_context io;
  hr::basic_hot_reloader<test::counter_iface, Watcher> r(io.get_executor(), box.opts());
  std::atomic<bool> spinning{true};
  std::atomic<long> calls{0};
  std::jthread caller;
  clock_type::time_point t0, started;
  asio::steady_timer done(io), unloaded(io);
  r.subscribe([&](const hr::reload_event& e) {
    if (e.kind == hr::event_kind::reload_started) {
      started = clock_type::now();
      if (detect) detect->push_back(bench::us_since(t0));
    }
    if (e.kind == hr::event_kind::reload_step && steps)
      (*steps)[e.step].push_back(std::chrono::duration<double, std::micro>(e.duration).count());
    if (e.kind == hr::event_kind::reloaded || e.kind == hr::event_kind::reload_failed) done.cancel();
    if (e.kind == hr::event_kind::unloaded) {
      if (unload) unload->push_back(bench::us_since(started));
      unloaded.cancel();
    }
  });
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    co_await r.async_start(asio::use_awaitable);
    if (spin)
      caller = std::jthread([&] {
        while (spinning.load(std::memory_order_relaxed))
          if (auto p = r.try_get("counter")) calls += p->count() >= 0;
      });
    for (int t = 1; t <= trials; ++t) {
      std::string want = t % 2 ? "2.0.0" : "1.0.0";
      done.expires_at(asio::steady_timer::time_point::max());
      unloaded.expires_at(asio::steady_timer::time_point::max());
      box.stage(t);
      t0 = clock_type::now();
      box.land();
      if (rename_us) rename_us->push_back(bench::us_since(t0));
      co_await done.async_wait(asio::as_tuple(asio::use_awaitable));
      auto p = co_await r.async_get("counter", asio::use_awaitable);
      if (p->version() != want) throw std::runtime_error("the new version did not answer");
      us.push_back(bench::us_since(t0));
      p.reset();
      // Trials are independent: the previous version is unmapped and its file freed before
      // the next lands.
      co_await unloaded.async_wait(asio::as_tuple(asio::use_awaitable));
      bench::wait_replaced_freed(box.shadow.string());
    }
    spinning = false;
    if (caller.joinable()) caller.join();
    co_await r.async_stop(asio::use_awaitable);
  }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  io.run();
  if (unload && unload->size() > us.size()) unload->resize(us.size()); // not the one at stop
  return us;
}

// What forking this process costs now: what a probe forked from the program itself would pay.
std::vector<double> fork_us(int trials) {
  std::vector<double> us;
  for (int t = 0; t < trials; ++t) {
    auto t0 = clock_type::now();
    pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    ::waitpid(pid, nullptr, 0);
    us.push_back(bench::us_since(t0));
  }
  return us;
}

// Manual reloads; with `grow_mb`, the program first touches that much more memory (after
// the reloader, and so its probe process, exists), and `forks` gets what a fork costs then.
std::vector<double> manual_us(int trials, const sandbox& box, bool probe = true, int grow_mb = 0,
                              std::vector<double>* forks = nullptr, int probe_reuse = hr::options{}.probe_reuse) {
  std::vector<double> us;
  asio::io_context io;
  auto opts = box.opts();
  opts.probe_in_child = probe;
  opts.probe_reuse = probe_reuse;
  hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher> r(io.get_executor(), opts);
  std::vector<char> ballast(std::size_t(grow_mb) << 20, 1); // every page touched
  if (forks) *forks = fork_us(trials);
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    co_await r.async_start(asio::use_awaitable);
    for (int t = 1; t <= trials; ++t) {
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable); // the old version's unmapping
      bench::wait_replaced_freed(box.shadow.string());
      box.install(t);
      // A manual reload comes some time after the build: its file is written out by then
      // (the rename starts that writing; its completions would otherwise land in the figure).
      box.settle();
      auto t0 = clock_type::now();
      co_await r.async_reload_plugin("counter", asio::use_awaitable);
      auto p = co_await r.async_get("counter", asio::use_awaitable);
      p->count();
      us.push_back(bench::us_since(t0));
    }
    co_await r.async_stop(asio::use_awaitable);
  }, [](std::exception_ptr e) { if (e) std::rethrow_exception(e); });
  io.run();
  return us;
}

} // namespace

int main(int argc, char** argv) {
  int trials = bench::arg(argc, argv, "--trials", 200);
  int polling_trials = bench::arg(argc, argv, "--polling-trials", 30);
  int grow_mb = bench::arg(argc, argv, "--grow-mb", 512);
  sandbox box;
  auto size = fs::file_size(box.plugins / "counter.so");
  std::fprintf(stderr, "plugin: %ju bytes (-O2)\n", static_cast<std::uintmax_t>(size));

  parts_t parts;
  auto floor = floor_us(trials, box, parts);
  if (floor.empty()) {
    std::fprintf(stderr, "reload_latency: the floor could not be measured\n");
    return 1;
  }
  auto f = bench::summarize(floor).p50;
  bench::report("reload_latency", "floor_copy_dlopen_factory_dlclose", floor,
                bench::field("plugin_bytes", double(size)));
  for (auto name : {"copy", "dlopen_dlsym", "factory_call_delete", "dlclose_unlink"})
    bench::report("reload_latency", std::string("floor_part_") + name, parts[name]);
  if (bench::wanted(argc, argv, "probe")) {
    std::vector<double> probe_reused, probe_fresh;
    if (!probe_us(trials, box, probe_reused, probe_fresh)) {
      std::fprintf(stderr, "reload_latency: the probe could not be measured\n");
      return 1;
    }
    bench::report("reload_latency", "probe_alone", probe_reused,
                  bench::field("ratio_to_floor", bench::summarize(probe_reused).p50 / f) +
                      bench::field("ratio_to_fresh_process", bench::summarize(probe_reused).p50 /
                                                                 bench::summarize(probe_fresh).p50));
    bench::report("reload_latency", "probe_alone_fresh_process_per_probe", probe_fresh,
                  bench::field("ratio_to_floor", bench::summarize(probe_fresh).p50 / f));
  }
  if (bench::wanted(argc, argv, "inotify")) {
    steps_t steps;
    std::vector<double> detect, renames, unloads;
    auto inotify = watched_us<hr::inotify_watcher>(trials, box, &steps, &detect, &renames, &unloads);
    bench::report("reload_latency", "inotify_debounce_0", inotify,
                  bench::field("ratio_to_floor", bench::summarize(inotify).p50 / f));
    // rename() replacing a file with no other name frees the old inode's blocks (230 us and
    // more on ext4 here); the loader links the served library into its shadow directory, so
    // the rename only drops a name, and the blocks are freed later on the loader's thread.
    bench::report("reload_latency", "rename_syscall", renames);
    bench::report("reload_latency", "inotify_step_detect", detect);
    const std::pair<hr::reload_step, const char*> names[] = {
        {hr::reload_step::library_loaded, "copy_load_check"}, {hr::reload_step::quiesced, "quiesce"},
        {hr::reload_step::state_saved, "get_state"},          {hr::reload_step::torn_down, "teardown"},
        {hr::reload_step::constructed, "construct"},          {hr::reload_step::state_restored, "set_state"},
        {hr::reload_step::reload_hook, "on_reload"},          {hr::reload_step::published, "publish"}};
    for (auto& [step, name] : names)
      bench::report("reload_latency", std::string("inotify_step_until_") + name, steps[step]);
    bench::report("reload_latency", "inotify_step_until_old_version_unmapped", unloads);
  }
  if (bench::wanted(argc, argv, "spinning")) {
    // Under CPU load: a thread calling the plugin without pause takes one of the two cores.
    auto loaded = watched_us<hr::inotify_watcher>(trials, box, nullptr, nullptr, nullptr, nullptr, true);
    bench::report("reload_latency", "inotify_debounce_0_spinning_caller", loaded,
                  bench::field("ratio_to_floor", bench::summarize(loaded).p50 / f));
  }
  if (bench::wanted(argc, argv, "polling")) {
    auto polling = watched_us<hr::polling_watcher>(polling_trials, box, nullptr, nullptr);
    bench::report("reload_latency", "polling_default_interval", polling,
                  bench::field("ratio_to_floor", bench::summarize(polling).p50 / f));
  }
  std::vector<double> manual; // with the probe: the baseline of the fresh and grown cases
  if (bench::wanted(argc, argv, "manual")) {
    manual = manual_us(trials, box);
    bench::report("reload_latency", "manual_async_reload_plugin", manual,
                  bench::field("ratio_to_floor", bench::summarize(manual).p50 / f));
  }
  if (bench::wanted(argc, argv, "fresh")) {
    // The probe with a fresh process per probe (the design before reused workers).
    auto fresh = manual_us(trials, box, true, 0, nullptr, 1);
    bench::report("reload_latency", "manual_probe_fresh_process_per_probe", fresh,
                  bench::field("ratio_to_floor", bench::summarize(fresh).p50 / f) +
                      (manual.empty() ? std::string()
                                      : bench::field("ratio_of_reused_worker",
                                                     bench::summarize(manual).p50 / bench::summarize(fresh).p50)));
  }
  if (bench::wanted(argc, argv, "unprobed")) {
    // What the probe (a worker process that loads the library first) costs.
    auto unprobed = manual_us(trials, box, false);
    parts_t fresh_parts;
    auto fresh_floor = floor_us(trials, box, fresh_parts, true);
    bench::report("reload_latency", "floor_of_a_fresh_build", fresh_floor,
                  bench::field("ratio_to_floor", bench::summarize(fresh_floor).p50 / f));
    bench::report("reload_latency", "manual_without_probe_in_child", unprobed,
                  bench::field("ratio_to_floor", bench::summarize(unprobed).p50 / f) +
                      bench::field("ratio_to_floor_of_a_fresh_build",
                                   bench::summarize(unprobed).p50 / bench::summarize(fresh_floor).p50));
  }
  if (bench::wanted(argc, argv, "grown")) {
    // The probe forks a server made when the reloader was, not the program: its cost does not
    // grow with the program. Baseline: forking the grown program itself, in the same run.
    std::vector<double> forks;
    auto grown = manual_us(trials, box, true, grow_mb, &forks);
    bench::report("reload_latency", "fork_of_program_grown_" + std::to_string(grow_mb) + "MB", forks);
    bench::report("reload_latency", "manual_program_grown_" + std::to_string(grow_mb) + "MB", grown,
                  (manual.empty() ? std::string()
                                  : bench::field("ratio_to_manual", bench::summarize(grown).p50 / bench::summarize(manual).p50)) +
                      bench::field("ratio_to_fork", bench::summarize(grown).p50 / bench::summarize(forks).p50));
  }
  return 0;
}
