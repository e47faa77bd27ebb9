// A fresh program (the dynamic linker's choices depend on what the process loaded before)
// that serves a plugin linked to a C++ library of its own, which the program does not link:
// it loads it, reloads it, and says whether the plugin found its library where it lies and
// whether the old version unloaded. Built with export-dynamic (linked_host) and without
// (linked_host_plain).
// Usage: linked_host PLUGIN.so LIBRARY.so origin|built|broken probe|no_probe
//   LIBRARY.so is copied to DIR/lib beside DIR/plugins/counter.so; `origin`: the plugin must
//   use that copy (it finds it through $ORIGIN/../lib), `built`: the file given (it finds it
//   through an absolute run path); `broken`: the copy is not a library, and the plugin must
//   be refused with an error that names it and why it failed.
#include <hotreload.hpp>

#include "plugins/counter_iface.hpp"

#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <dlfcn.h>
#include <link.h>
#include <unistd.h>

int main(int argc, char** argv) {
  namespace hr = hotreload;
  namespace fs = std::filesystem;
  if (argc != 5) return 2;
  // The dynamic linker searches LD_LIBRARY_PATH before a DT_RUNPATH (it would find the build
  // directory's copy, if that is in it), and reads it only at start: run once more without it.
  if (::getenv("LD_LIBRARY_PATH")) {
    ::unsetenv("LD_LIBRARY_PATH");
    ::execv("/proc/self/exe", argv);
    return 2;
  }
  const fs::path plugin = argv[1], library = argv[2];
  const std::string where = argv[3];
  const bool beside = where != "built", probe = std::string(argv[4]) == "probe";
  const auto root = fs::temp_directory_path() / ("hotreload-linked-" + std::to_string(::getpid()));
  fs::create_directories(root / "plugins");
  fs::create_directories(root / "lib");
  fs::copy_file(library, root / "lib" / library.filename());
  if (where == "broken") std::ofstream(root / "lib" / library.filename(), std::ios::trunc) << std::string(4096, 'x');
  auto install = [&] {
    fs::copy_file(plugin, root / "plugins" / ".counter.so.tmp", fs::copy_options::overwrite_existing);
    fs::rename(root / "plugins" / ".counter.so.tmp", root / "plugins" / "counter.so");
  };
  install();

  boost::asio::io_context io;
  std::vector<std::string> problems;
  hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher> r(
      io.get_executor(), hr::options{.plugin_dirs = {root / "plugins"},
                                     .paths_env = {},
                                     .shadow_dir = root / "shadow",
                                     .probe_in_child = probe,
                                     .verbosity = hr::log_level::warning,
                                     .sink = [&](const hr::log_record& l) {
                                       // Said once by a host linked without export-dynamic
                                       // (linked_host_plain), and expected there.
                                       if (l.message.find("does not export its symbols") == l.message.npos)
                                         problems.emplace_back(l.message);
                                     }});
  std::optional<hr::event_kind> released;
  r.subscribe([&](const hr::reload_event& e) {
    if ((e.kind == hr::event_kind::pinned || e.kind == hr::event_kind::unloaded) && !released) released = e.kind;
  });
  // Runs the io_context until `done` (a plugin keeps a timer armed).
  auto until = [&](auto done) {
    while (!done()) {
      if (io.stopped()) io.restart();
      io.run_one();
    }
  };
  auto wait = [&](auto start) {
    std::optional<hr::error_code> result;
    start([&](hr::error_code e) { result = e; });
    until([&] { return result.has_value(); });
    return *result;
  };
  auto started = wait([&](auto done) { r.async_start(done); });
  if (where == "broken") {
    // "<plugin> is not a loadable library: ... (<dir>/../lib/LIBRARY.so, which it needs, failed
    // to load: ... invalid ELF header)"
    const auto cause = "/../lib/" + library.filename().string() + ", which it needs, failed to load: ";
    bool named = std::any_of(problems.begin(), problems.end(), [&](const std::string& p) {
      return p.find(cause) != std::string::npos && p.find("invalid ELF header") != std::string::npos;
    });
    std::printf("%s with a broken library: start %s\n", plugin.filename().c_str(), started.message().c_str());
    for (auto& p : problems) std::printf("  %s\n", p.c_str());
    const bool serving = static_cast<bool>(r.try_get("counter"));
    wait([&](auto done) { r.async_stop(done); });
    fs::remove_all(root);
    return started == hr::errc::load_failed && !serving && named ? 0 : 1;
  }
  bool serving = static_cast<bool>(r.try_get("counter"));
  std::string found = "not loaded"; // the file the plugin's library was loaded from
  if (void* h = ::dlopen(library.filename().c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
    link_map* l = nullptr;
    if (::dlinfo(h, RTLD_DI_LINKMAP, &l) == 0 && l) found = l->l_name;
    ::dlclose(h);
  }
  std::error_code ec;
  const bool right_file = fs::equivalent(found, beside ? root / "lib" / library.filename() : library, ec);
  install();
  auto reloaded = wait([&](auto done) { r.async_reload_plugin("counter", done); });
  if (!reloaded) until([&] { return released.has_value(); }); // the old version's release
  wait([&](auto done) { r.async_stop(done); });
  fs::remove_all(root, ec);

  std::printf("%s: start %s, %s, library from %s%s; reload %s; old version %s; %zu warnings or errors\n",
              plugin.filename().c_str(), started ? started.message().c_str() : "ok",
              serving ? "serving" : "NOT serving", found.c_str(), right_file ? "" : " (WRONG FILE)",
              reloaded ? reloaded.message().c_str() : "ok",
              !released ? "not released" : *released == hr::event_kind::unloaded ? "unloaded" : "PINNED",
              problems.size());
  for (auto& p : problems) std::printf("  %s\n", p.c_str());
  return !started && serving && right_file && !reloaded && released == hr::event_kind::unloaded && problems.empty()
             ? 0
             : 1;
}
