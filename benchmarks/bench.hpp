// What the benchmark programs share: samples, percentiles, JSON lines on stdout and a
// table on stderr.
#ifndef HOTRELOAD_BENCH_HPP
#define HOTRELOAD_BENCH_HPP

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <dirent.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

namespace bench {

using clock_type = std::chrono::steady_clock;

inline double us_since(clock_type::time_point t0) {
  return std::chrono::duration<double, std::micro>(clock_type::now() - t0).count();
}

struct stats {
  std::size_t n = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0;
};

inline stats summarize(std::vector<double> v) {
  stats s;
  if (v.empty()) return s;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<std::size_t>(q * v.size()))]; };
  return {v.size(), at(0.5), at(0.9), at(0.99), v.back()};
}

/// One JSON line: {"bench", "case", "n", "p50_us", "p90_us", "p99_us", "max_us"} plus
/// `extra` (already formatted `, "key": value` pairs); and a line of the table on stderr.
inline void report(const char* bench, const std::string& kase, const std::vector<double>& us,
                   const std::string& extra = {}) {
  auto s = summarize(us);
  std::printf("{\"bench\": \"%s\", \"case\": \"%s\", \"n\": %zu, \"p50_us\": %.4f, \"p90_us\": %.4f, "
              "\"p99_us\": %.4f, \"max_us\": %.4f%s}\n",
              bench, kase.c_str(), s.n, s.p50, s.p90, s.p99, s.max, extra.c_str());
  std::fflush(stdout);
  std::fprintf(stderr, "%-16s %-34s n %5zu  p50 %11.4f us  p90 %11.4f us  p99 %11.4f us%s\n", bench, kase.c_str(),
               s.n, s.p50, s.p90, s.p99, extra.c_str());
}

inline std::string field(const char* key, double value) {
  char buf[96];
  std::snprintf(buf, sizeof buf, ", \"%s\": %.3f", key, value);
  return buf;
}

/// Resident set size of this process, in bytes.
inline long rss_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * ::sysconf(_SC_PAGESIZE);
}

/// Open file descriptors of this process.
inline int open_fds() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (auto* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
  }
  return n - 1; // the directory's own descriptor
}

/// Waits until no replaced library under the shadow directory `dir` waits to be freed (a
/// last name, `*.source`, with no other): the loader frees a replaced library's blocks on a
/// thread of its own once the old version is gone, so independent trials wait for it, as
/// they wait for the old version's unmapping.
inline void wait_replaced_freed(const std::string& dir) {
  for (;;) {
    bool waiting = false;
    std::error_code ec;
    for (auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
      struct ::stat st{};
      waiting = waiting || (e.path().extension() == ".source" && ::lstat(e.path().c_str(), &st) == 0 &&
                            st.st_nlink == 1);
    }
    if (!waiting) return;
    ::sched_yield();
  }
}

/// Distinct files mapped from below `dir`.
inline std::size_t mapped_under(const std::string& dir) {
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> files;
  std::string line;
  while (std::getline(maps, line))
    if (auto pos = line.find(dir); pos != std::string::npos) files.insert(line.substr(pos));
  return files.size();
}

/// `--name N` from the command line, or `fallback`.
inline int arg(int argc, char** argv, const char* name, int fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (!std::strcmp(argv[i], name)) return std::max(1, std::atoi(argv[i + 1]));
  return fallback;
}

/// Whether the part `name` of a benchmark is to run: every part without `--only`, else those
/// named in its comma-separated list (`--only probe,manual`).
inline bool wanted(int argc, char** argv, std::string_view name) {
  for (int i = 1; i + 1 < argc; ++i)
    if (!std::strcmp(argv[i], "--only")) {
      std::string_view list = argv[i + 1];
      for (std::size_t at = 0; at <= list.size();) {
        auto comma = std::min(list.find(',', at), list.size());
        if (list.substr(at, comma - at) == name) return true;
        at = comma + 1;
      }
      return false;
    }
  return true;
}

} // namespace bench

#endif
