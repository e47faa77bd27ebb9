// Time and memory to start watching a large tree: 10,000 files in 1,000 directories, for
// each watcher. Times `start()` (the inotify watcher adds a watch per directory; the polling
// watcher takes its first full scan), the process's RSS growth, and for inotify the number
// of watches. Baseline in the same run: a plain recursive listing of the same tree.
//
//   watch_scale [--dirs 1000] [--files 10000] [--trials 5]
#include <hotreload.hpp>

#include "bench.hpp"

#include <boost/asio/io_context.hpp>

#include <fstream>

namespace asio = boost::asio;
namespace hr = hotreload;
namespace fs = std::filesystem;
using bench::clock_type;

template <class Watcher>
static void measure(const char* kase, const fs::path& root, int trials, int files) {
  std::vector<double> us;
  long rss_growth = 0;
  std::size_t watches = 0;
  for (int t = 0; t < trials; ++t) {
    asio::io_context io;
    auto make = [&]() -> Watcher {
      if constexpr (std::is_constructible_v<Watcher, asio::any_io_executor, const hr::options&>)
        return Watcher(io.get_executor(), hr::options{});
      else
        return Watcher(io.get_executor());
    };
    Watcher w = make();
    long rss0 = bench::rss_bytes();
    auto t0 = clock_type::now();
    hr::error_info err = w.start({root}, [](std::vector<hr::file_change>) {});
    us.push_back(bench::us_since(t0));
    if (err.code) {
      std::fprintf(stderr, "watch_scale: %s: %s\n", kase, err.message.c_str());
      std::exit(1);
    }
    rss_growth = std::max(rss_growth, bench::rss_bytes() - rss0);
    if constexpr (requires { w.watch_count(); }) watches = w.watch_count();
    w.stop();
  }
  bench::report("watch_scale", kase, us,
                bench::field("files", files) + bench::field("rss_growth_kb", rss_growth / 1024.0) +
                    bench::field("watches", static_cast<double>(watches)));
}

int main(int argc, char** argv) {
  int dirs = bench::arg(argc, argv, "--dirs", 1000);
  int files = bench::arg(argc, argv, "--files", 10000);
  int trials = bench::arg(argc, argv, "--trials", 5);
  fs::path root = fs::temp_directory_path() / ("hotreload-scale-" + std::to_string(::getpid()));
  // 1,000 directories, 10 per parent directory (a tree three levels deep).
  for (int i = 0; i < files; ++i) {
    int d = i % dirs;
    fs::path dir = root / ("a" + std::to_string(d / 100)) / ("b" + std::to_string(d / 10 % 10)) / ("c" + std::to_string(d % 10));
    fs::create_directories(dir);
    std::ofstream(dir / ("lib" + std::to_string(i) + ".so")) << "x";
  }

  std::vector<double> listing;
  std::size_t seen = 0;
  for (int t = 0; t < trials; ++t) {
    auto t0 = clock_type::now();
    seen = 0;
    for (auto& e : fs::recursive_directory_iterator(root)) seen += e.is_regular_file();
    listing.push_back(bench::us_since(t0));
  }
  bench::report("watch_scale", "baseline_recursive_listing", listing, bench::field("files", static_cast<double>(seen)));
  measure<hr::inotify_watcher>("inotify", root, trials, files);
  measure<hr::polling_watcher>("polling", root, trials, files);
  fs::remove_all(root);
}
