// From a source file's write to the new code answering, through rebuild_watcher (the build
// command run by the library, then the reload), against the same build command run by hand
// in the same run: the library's overhead over the build. Trials alternate the two.
//
//   edit_to_serving [--trials N]
#include <hotreload.hpp>

#include "bench.hpp"
#include "plugins/counter_iface.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdlib>
#include <future>
#include <mutex>
#include <thread>

namespace asio = boost::asio;
namespace hr = hotreload;
namespace fs = std::filesystem;
using bench::clock_type;

namespace {

std::string source(int version) {
  return "#define PLUGIN_VERSION \"1.0." + std::to_string(version) + "\"\n#include \"" BENCH_SOURCE_ROOT
         "/tests/plugins/counter_plugin.hpp\"\n";
}

// The plugin's build, as a developer's would be: the compiler at -O0, writing in place.
std::string build_command(const fs::path& src, const fs::path& out) {
  return std::string(BENCH_CXX) + " -std=c++20 -O0 -fPIC -shared -pthread -DBOOST_ALL_NO_LIB -DBOOST_DLL_USE_STD_FS " +
         BENCH_PLUGIN_FLAGS + " -I" BENCH_SOURCE_ROOT "/include -I" BENCH_SOURCE_ROOT "/tests " + src.string() +
         " -o " + out.string();
}

void save(const fs::path& file, const std::string& text) {
  auto tmp = file.parent_path() / ("." + file.filename().string() + ".swp");
  std::ofstream(tmp) << text;
  fs::rename(tmp, file);
}

} // namespace

int main(int argc, char** argv) {
  int trials = 10;
  for (int i = 1; i + 1 < argc; i += 2)
    if (std::string_view(argv[i]) == "--trials") trials = std::atoi(argv[i + 1]);

  auto root = fs::temp_directory_path() / ("hotreload-bench-edit-" + std::to_string(::getpid()));
  fs::create_directories(root / "src");
  fs::create_directories(root / "plugins");
  fs::create_directories(root / "hand");
  int version = 0;
  save(root / "src" / "counter.cpp", source(version));
  auto hand_command = build_command(root / "hand" / "counter.cpp", root / "hand" / "counter.so");
  // The first library, built before the reloader starts.
  if (std::system(build_command(root / "src" / "counter.cpp", root / "plugins" / "counter.so").c_str()) != 0) {
    std::fprintf(stderr, "edit_to_serving: the plugin does not build\n");
    return 1;
  }

  asio::io_context io;
  hr::options opts{.plugin_dirs = {root / "plugins"}, .paths_env = {}, .verbosity = hr::log_level::warning};
  opts.rebuild.command = build_command(root / "src" / "counter.cpp", root / "plugins" / "counter.so");
  opts.rebuild.sources = {root / "src"};
  hr::basic_hot_reloader<test::counter_iface, hr::rebuild_watcher<>> r(io.get_executor(), opts);
  std::mutex mu;
  std::string waited_for;
  std::promise<clock_type::time_point> serving;
  std::vector<double> build_us; // the library's build, from its events
  r.subscribe([&](const hr::reload_event& e) {
    std::lock_guard lk(mu);
    if (e.kind == hr::event_kind::build_succeeded)
      build_us.push_back(std::chrono::duration<double, std::micro>(e.duration).count());
    if (e.kind == hr::event_kind::reloaded && e.new_version == waited_for) serving.set_value(clock_type::now());
    if (e.kind == hr::event_kind::build_failed || e.kind == hr::event_kind::reload_failed)
      std::fprintf(stderr, "edit_to_serving: %s\n", e.error.message.c_str());
  });
  auto work = asio::make_work_guard(io);
  std::thread runner([&] { io.run(); });
  r.async_start(asio::use_future).get();

  std::vector<double> by_hand, through_library, overhead;
  for (int t = 0; t < trials; ++t) {
    ++version;
    // By hand: write the source, run the build.
    auto t0 = clock_type::now();
    save(root / "hand" / "counter.cpp", source(version));
    if (std::system(hand_command.c_str()) != 0) return 1;
    by_hand.push_back(bench::us_since(t0));

    // Through the library: write the source; the new version answers.
    std::future<clock_type::time_point> done;
    {
      std::lock_guard lk(mu);
      serving = {};
      done = serving.get_future();
      waited_for = "1.0." + std::to_string(version);
    }
    t0 = clock_type::now();
    save(root / "src" / "counter.cpp", source(version));
    if (done.wait_for(std::chrono::seconds(120)) != std::future_status::ready) {
      std::fprintf(stderr, "edit_to_serving: no reload within 120 s\n");
      return 1;
    }
    auto p = r.try_get("counter");
    if (!p || p->version() != "1.0." + std::to_string(version)) return 1;
    through_library.push_back(std::chrono::duration<double, std::micro>(done.get() - t0).count());
    overhead.push_back(through_library.back() - by_hand.back());
  }
  r.async_stop(asio::use_future).get();
  work.reset();
  runner.join();

  // Around its own build: the debounce, starting the build, handing the libraries over, the
  // reload (each trial's time to serving minus its build's duration).
  std::vector<double> around;
  {
    std::lock_guard lk(mu);
    for (std::size_t i = 0; i < through_library.size() && i < build_us.size(); ++i)
      around.push_back(through_library[i] - build_us[i]);
  }
  auto hand = bench::summarize(by_hand), lib = bench::summarize(through_library), over = bench::summarize(overhead);
  bench::report("edit_to_serving", "build by hand", by_hand);
  bench::report("edit_to_serving", "save to serving (rebuild_watcher)", through_library,
                bench::field("overhead_p50_us", over.p50) + bench::field("ratio_to_hand", lib.p50 / hand.p50) +
                    bench::field("bound_us", std::max(0.05 * hand.p50, 50'000.0)));
  bench::report("edit_to_serving", "around the library's build", around,
                bench::field("debounce_us", static_cast<double>(opts.rebuild.debounce.count()) * 1000));
  std::error_code ec;
  fs::remove_all(root, ec);
  return 0;
}
