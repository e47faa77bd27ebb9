// Hardening, the probe: static initialisers that throw, crash or hang cost the program
// nothing, and the probe process neither blocks the reloader's thread nor holds the program's
// resources.
#include "hardening.hpp"

#include <hotreload/detail/leak.hpp> // HOTRELOAD_HAS_LSAN (the engine's files include it; with separate compilation this file has no engine)

#include <link.h>

#include <sstream>

using namespace test;

namespace {
// The probe server and its workers (the processes whose parent it is).
std::vector<pid_t> probe_processes(pid_t server) {
  std::vector<pid_t> all{server};
  for (auto& e : fs::directory_iterator("/proc")) {
    const auto name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')'); // "pid (name) state ppid ..."
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 1));
    char state = 0;
    pid_t parent = 0;
    if (rest >> state >> parent && parent == server) all.push_back(std::stoi(name));
  }
  return all;
}
} // namespace

TEST_CASE("the probe runs beside the program: one small process, the reloader's thread serves meanwhile") {
  sandbox box;
  box.install("counter_v1");
  int before[2]; // a descriptor of the program's, opened before the reloader
  REQUIRE(::pipe(before) == 0);
  asio::io_context io; // one thread for the reloader and its callers
  auto opts = box.opts();
  opts.probe_timeout = 500ms;
  opts.verbosity = hr::log_level::off;
  reloader r(io.get_executor(), opts);
  recorder rec;
  rec.attach(r);
  const pid_t server = r.loader().probe_pid();
  REQUIRE(server > 0);
  // It holds none of the program's descriptors (a listening socket would stay bound).
  std::vector<std::string> fds;
  for (auto& e : fs::directory_iterator("/proc/" + std::to_string(server) + "/fd"))
    fds.push_back(e.path().filename().string());
  std::sort(fds.begin(), fds.end());
  std::string listed;
  for (auto& f : fds) listed += f + " ";
  CHECK_MESSAGE(listed == "0 1 2 3 ", "the probe process holds descriptors " << listed);
  ::close(before[0]);
  ::close(before[1]);
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    CHECK(r.loader().probe_pid() == server); // forked once, not per load

    // A static initialiser that hangs: while its probe waits out probe_timeout, the one
    // thread goes on serving the old version.
    box.install("counter_static_hangs");
    bool reload_done = false;
    int served_meanwhile = 0;
    asio::co_spawn(io, [&]() -> awaitable<void> {
      co_await rec.next(hr::event_kind::reload_started);
      while (!reload_done && served_meanwhile < 100) {
        auto p = r.try_get("counter");
        if (!p) break;
        p->increment();
        ++served_meanwhile;
        co_await asio::post(io, use_awaitable);
      }
    }, asio::detached);
    auto [ec] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    reload_done = true;
    CHECK(ec == hr::errc::load_failed);
    CHECK(served_meanwhile == 100);
    CHECK((co_await r.async_get("counter", use_awaitable))->count() == served_meanwhile);

    // The probe process killed from outside: the next load starts a new one.
    ::kill(server, SIGKILL);
    ::waitpid(server, nullptr, 0);
    box.install("counter_v2");
    co_await r.async_reload_plugin("counter", use_awaitable);
    CHECK(r.info("counter")->version == "2.0.0");
    CHECK(r.loader().probe_pid() > 0);
    CHECK(r.loader().probe_pid() != server);

    // The probe processes stopped from outside (a debugger, SIGSTOP): they answer nothing, so
    // the load fails once the answer is overdue, that server is ended, and the next load
    // starts a new one. (Its workers, which an idle one would otherwise answer, go on once
    // the test lets them: they see that the program has left them, and exit.)
    const pid_t stopped = r.loader().probe_pid();
    const auto stopped_all = probe_processes(stopped);
    for (pid_t p : stopped_all) ::kill(p, SIGSTOP);
    // Should the library wait for it regardless, it is let go after 20 s: the test fails
    // (the load succeeds late) instead of hanging.
    std::mutex mu;
    std::condition_variable cv;
    bool answered = false;
    std::thread valve([&] {
      std::unique_lock lk(mu);
      if (!cv.wait_for(lk, 20s, [&] { return answered; }))
        for (pid_t p : stopped_all) ::kill(p, SIGCONT);
    });
    box.install("counter_v1");
    auto t0 = std::chrono::steady_clock::now();
    std::tie(ec) = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    {
      std::lock_guard lk(mu);
      answered = true;
    }
    cv.notify_all();
    valve.join();
    CHECK(std::chrono::steady_clock::now() - t0 >= hr::detail::answer_limit(opts.probe_timeout));
    CHECK(ec == hr::errc::load_failed);
    auto info = r.info("counter");
    CHECK(info->version == "2.0.0");
    REQUIRE(info->last_error);
    CHECK_MESSAGE(info->last_error->message.find("did not answer") != std::string::npos, info->last_error->message);
    CHECK(::kill(stopped, 0) != 0); // ended and reaped
    for (pid_t p : stopped_all) ::kill(p, SIGCONT);
    co_await r.async_reload_plugin("counter", use_awaitable);
    CHECK(r.info("counter")->version == "1.0.0");
    CHECK(r.loader().probe_pid() != stopped);
    co_await r.async_stop(use_awaitable);
  });
}

#if defined(HOTRELOAD_HAS_LSAN) // AddressSanitizer, as hotreload/detail/leak.hpp detects it
constexpr bool under_address_sanitizer = true;
#else
constexpr bool under_address_sanitizer = false;
#endif

#if defined(__SANITIZE_THREAD__)
constexpr bool under_thread_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
constexpr bool under_thread_sanitizer = true;
#else
constexpr bool under_thread_sanitizer = false;
#endif
#else
constexpr bool under_thread_sanitizer = false;
#endif

TEST_CASE("probe workers: reused up to probe_reuse, replaced when a library leaves one unclean, crashes or hangs it") {
  using hr::detail::probe_result;
  using hr::detail::probe_server;
  sandbox box;
  auto image = [&](const std::string& variant) {
    auto to = box.root / (variant + ".probed.so");
    if (!fs::exists(to)) fs::copy_file(sandbox::built(variant), to);
    return to;
  };
  auto probe = [](probe_server& s, const fs::path& library, std::chrono::milliseconds limit = 10s) {
    return probe_server::read_result(s.request(library, limit), hr::detail::answer_limit(limit));
  };

  // A clean library: the same worker, probe_reuse times, then a fresh one.
  auto counted = probe_server::start(3);
  REQUIRE(counted);
  std::vector<int> workers;
  for (int i = 0; i < 4; ++i) {
    auto r = probe(*counted, image("counter_v1"));
    CHECK(r.kind == probe_result::loaded);
    CHECK(r.value == 0);
    workers.push_back(r.worker);
  }
  CHECK(workers[0] > 0);
  CHECK(workers[1] == workers[0]);
  CHECK(workers[2] == workers[0]);
  CHECK(workers[3] != workers[0]);

  // What taints a worker, and what does not. Each case is followed by a clean library: it
  // must find the worker (`kept`) or a new one.
  auto server = probe_server::start(100);
  REQUIRE(server);
  int worker = probe(*server, image("counter_v1")).worker;
  struct case_t {
    std::string variant;
    probe_result::kind_t kind;
    bool kept;
  };
  std::vector<case_t> cases = {
      {"not_a_plugin", probe_result::loaded, true},           // loads and unloads cleanly
      {"counter_static_fd", probe_result::loaded, false},     // a descriptor left open
      {"counter_static_leaks", probe_result::loaded, false},  // 80 MB left resident
      {"counter_static_exits", probe_result::exited, false},  // exit(0) while loading
      {"counter_undefined_at_init", probe_result::exited, false}, // the dynamic linker's exit(127)
      {"counter_undefined_later", probe_result::loaded, true},    // bound lazily: the probe is for initialisers
      {"counter_static_throws", probe_result::signalled, false},
      {"counter_static_hangs", probe_result::timed_out, false},
  };
  // A thread left running. (ThreadSanitizer ends a forked process that starts a thread.)
  if (!under_thread_sanitizer) cases.push_back({"counter_static_thread", probe_result::loaded, false});
  // Built by g++ without -fno-gnu-unique it cannot unload (clang emits no such symbols).
  if (hr::detail::inspect_elf(sandbox::built("counter_gnu_unique")).unique_count > 0)
    cases.push_back({"counter_gnu_unique", probe_result::loaded, false});
  // A file that is no library: dlopen fails, the worker is as it was.
  std::ofstream(box.root / "text.so") << "not a library";
  auto failed = probe(*server, box.root / "text.so");
  CHECK(failed.kind == probe_result::loaded);
  CHECK(failed.value == 1);
  CHECK(failed.worker == worker);
  for (auto& c : cases) {
    CAPTURE(c.variant);
    auto r = probe(*server, image(c.variant), 300ms);
    CHECK(r.kind == c.kind);
    auto next = probe(*server, image("counter_v1"));
    CHECK(next.kind == probe_result::loaded);
    CHECK(next.value == 0);
    CHECK((next.worker == worker) == c.kept);
    worker = next.worker;
  }
  CHECK(probe(*server, image("counter_static_exits")).value == 0); // the library's own exit status
  CHECK(probe(*server, image("counter_undefined_at_init")).value == 127);

  // A library sent open (as the loader does, so that the probe reads the file being copied):
  // a rename over its path meanwhile changes nothing.
  int fd = ::open(image("counter_static_throws").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  fs::rename(image("counter_v1"), box.root / "counter_static_throws.probed.so");
  auto sent = probe_server::read_result(server->request(fd, 10s), hr::detail::answer_limit(10s));
  CHECK(sent.kind == probe_result::signalled);
  CHECK(sent.value == SIGABRT);
  ::close(fd);
  auto renamed = probe(*server, box.root / "counter_static_throws.probed.so");
  CHECK(renamed.kind == probe_result::loaded);
}

TEST_CASE("a probe server forked while a thread of the program holds a lock its workers need is forked again") {
  using hr::detail::probe_result;
  using hr::detail::probe_server;
  // Another thread holds glibc's lock on its list of libraries a quarter of the time
  // (dl_iterate_phdr holds it while its callback runs), and loads and unloads a library
  // meanwhile (the same lock for a moment, the exit handlers' lock for each static object and
  // in __cxa_finalize, a sanitizer's own): a process forked then inherits them held, by a
  // thread it does not have. Each server must still load a library, not hang in its worker's
  // dlopen until the probe's limit.
  sandbox box;
  auto library = box.root / "counter.probed.so";
  fs::copy_file(sandbox::built("counter_v1"), library);
  auto other = box.root / "counter.other.so";
  fs::copy_file(sandbox::built("counter_v2"), other);
  std::jthread walker([&](std::stop_token stop) { // stopped and joined however the test ends
    while (!stop.stop_requested()) {
      ::dl_iterate_phdr(
          [](dl_phdr_info*, std::size_t, void*) {
            std::this_thread::sleep_for(1ms);
            return 1;
          },
          nullptr);
      // Not under AddressSanitizer: GCC 12's runtime leaves its allocator's and globals' locks
      // held in a child forked while another thread takes them (seen: a worker waiting on a
      // lock in the allocator's region), which loading and unloading a library here does.
      if (!under_address_sanitizer)
        if (void* h = ::dlopen(other.c_str(), RTLD_NOW | RTLD_LOCAL)) ::dlclose(h);
      std::this_thread::sleep_for(2ms);
    }
  });
  int loaded = 0;
  for (int i = 0; i < 20; ++i) {
    auto server = probe_server::start(1);
    REQUIRE(server);
    auto r = probe_server::read_result(server->request(library, 3s), hr::detail::answer_limit(3s));
    CHECK_MESSAGE(r.kind == probe_result::loaded, "server " << i << " did not load it: " << int(r.kind));
    loaded += r.kind == probe_result::loaded;
  }
  walker.request_stop();
  walker.join();
  CHECK(loaded == 20);
}

TEST_CASE("probe workers keep the libraries a plugin brought in, and load one again once it is rebuilt") {
  using hr::detail::probe_result;
  using hr::detail::probe_server;
  sandbox box;
  // A library the test program lacks, whose static initialiser notes each load (by which
  // process) in a file, and a library that needs it (named by its path: it has no soname).
  const auto notes = box.root / "dep.notes", dep = box.root / "libdep.so", user = box.root / "user.so";
  std::ofstream(box.root / "dep.cpp") << "#include <fcntl.h>\n#include <stdio.h>\n#include <unistd.h>\n"
                                         "__attribute__((constructor)) static void loaded() {\n"
                                         "  int fd = open(\"" << notes.string() << "\", O_WRONLY | O_APPEND | O_CREAT, 0600);\n"
                                         "  char line[32];\n  int n = snprintf(line, sizeof line, \"%d\\n\", (int)getpid());\n"
                                         "  if (write(fd, line, n) != n) {}\n  close(fd);\n}\n"
                                         "extern \"C\" int dep_value() { return 7; }\n";
  std::ofstream(box.root / "user.cpp") << "extern \"C\" int dep_value();\nextern \"C\" int user_value() { return dep_value(); }\n";
  const std::string cxx = std::string(TEST_CXX) + " -fPIC -shared -o ";
  REQUIRE(std::system((cxx + dep.string() + " " + (box.root / "dep.cpp").string()).c_str()) == 0);
  REQUIRE(std::system((cxx + user.string() + " " + (box.root / "user.cpp").string() + " " + dep.string()).c_str()) == 0);
  auto loads = [&] { // the processes that ran the dependency's static initialiser, in order
    std::vector<int> pids;
    std::ifstream in(notes);
    for (int pid; in >> pid;) pids.push_back(pid);
    return pids;
  };
  auto probe = [](probe_server& s, const fs::path& library) {
    return probe_server::read_result(s.request(library, 10s), hr::detail::answer_limit(10s));
  };

  auto server = probe_server::start(64);
  REQUIRE(server);
  std::vector<int> workers;
  for (int i = 0; i < 3; ++i) {
    auto r = probe(*server, user);
    CHECK(r.kind == probe_result::loaded);
    CHECK(r.value == 0);
    workers.push_back(r.worker);
  }
  CHECK(workers[1] == workers[0]);
  CHECK(workers[2] == workers[0]);
  // Loaded with the first probe, then once more by itself (so that it cannot hold the probed
  // library), and kept: without that, once per probe.
  CHECK(loads() == std::vector<int>{workers[0], workers[0]});

  // A new build of the dependency: the worker that kept the old one takes no more probes; a
  // fresh one runs the new build's initialiser.
  fs::copy_file(dep, box.root / "libdep.so.new");
  fs::rename(box.root / "libdep.so.new", dep);
  auto after = probe(*server, user);
  CHECK(after.kind == probe_result::loaded);
  CHECK(after.value == 0);
  CHECK(after.worker != workers[0]);
  auto next = probe(*server, user);
  CHECK(next.worker == after.worker);
  CHECK(loads() == std::vector<int>{workers[0], workers[0], after.worker, after.worker});
  CHECK(::kill(workers[0], 0) != 0); // ended
}

TEST_CASE("a probe loads a library's dependencies by themselves first: those found through $ORIGIN, and C++ ones") {
  using hr::detail::probe_result;
  using hr::detail::probe_server;
  // counter_linked finds libcounter_dep.so through $ORIGIN/../lib; a worker loads it through
  // /proc/self/fd/N, whose $ORIGIN is /proc/self/fd. Built by g++, the dependency has
  // STB_GNU_UNIQUE symbols: loaded with the plugin, it binds one to the plugin's copy, and the
  // plugin cannot unload (the worker would be replaced after every probe).
  sandbox box;
  fs::create_directories(box.root / "lib");
  fs::copy_file(fs::path(TEST_PLUGIN_DIR) / "linked" / "libcounter_dep.so", box.root / "lib" / "libcounter_dep.so");
  box.install("linked/counter_linked");
  int fd = ::open((box.plugins / "counter.so").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  auto first = hr::detail::dependencies_first(fd, box.plugins);
  auto has = [&](const std::string& lib) { return std::find(first.begin(), first.end(), lib) != first.end(); };
  CHECK(has(box.plugins.string() + "/../lib/libcounter_dep.so")); // by path: the second run path entry
  CHECK(has("libstdc++.so.6"));                                   // by name: the usual search
  auto server = probe_server::start(64);
  REQUIRE(server);
  auto probe = [&](const std::vector<std::string>& libs) {
    return probe_server::read_result(server->request(fd, 10s, libs), hr::detail::answer_limit(10s));
  };
  void* earlier = ::dlopen("libcounter_dep.so", RTLD_LAZY | RTLD_NOLOAD); // loaded for good by a test before
  if (earlier) ::dlclose(earlier);
  auto alone = probe({});
  CHECK(alone.kind == probe_result::loaded);
  CHECK(alone.value == (earlier ? 0 : 1)); // else dlopen failed: not found from /proc/self/fd
  auto one = probe(first), two = probe(first);
  CHECK(one.kind == probe_result::loaded);
  CHECK(one.value == 0);
  CHECK(two.value == 0);
  CHECK(two.worker == one.worker); // the plugin unloaded: the worker goes on
  ::close(fd);
}
