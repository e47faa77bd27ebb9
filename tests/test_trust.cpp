// Hardening, trust: which files may be loaded at all (owner, permissions, symlinks, plugin
// directories, those of HOTRELOAD_PLUGIN_PATHS too), private shadow copies, unreadable
// plugin directories.
#include "hardening.hpp"

using namespace test;

TEST_CASE("trust checks: each refusal names the check and the fix, and each can be relaxed") {
  struct trust_case {
    std::string what;
    std::function<void(const sandbox&)> install;
    std::string says;
    std::function<void(hr::trust_checks&)> relax; // empty: cannot be relaxed
  };
  auto v2_then = [](std::function<void(const sandbox&)> f) {
    return [f](const sandbox& b) {
      b.install("counter_v2");
      f(b);
    };
  };
  std::vector<trust_case> cases = {
      {"a group-writable library", v2_then([](const sandbox& b) { fs::permissions(b.plugins / "counter.so", fs::perms(0664)); }),
       "writable by its group (mode 0664); run chmod go-w", [](hr::trust_checks& t) { t.permissions = false; }},
      {"a world-writable library", v2_then([](const sandbox& b) { fs::permissions(b.plugins / "counter.so", fs::perms(0646)); }),
       "writable by others (mode 0646)", [](hr::trust_checks& t) { t.permissions = false; }},
      {"a world-writable plugin directory", v2_then([](const sandbox& b) { fs::permissions(b.plugins, fs::perms(0777)); }),
       "is writable by others (mode 0777)", [](hr::trust_checks& t) { t.permissions = false; }},
      {"a symlink that leads outside the plugin directories",
       [](const sandbox& b) {
         fs::create_directories(b.root / "elsewhere");
         fs::copy_file(sandbox::built("counter_v2"), b.root / "elsewhere" / "counter.so");
         fs::remove(b.plugins / "counter.so");
         fs::create_symlink(b.root / "elsewhere" / "counter.so", b.plugins / "counter.so");
       },
       "outside every plugin directory; put it in one, or set options.trust.inside_plugin_dirs = false",
       [](hr::trust_checks& t) { t.inside_plugin_dirs = false; }},
      {"a FIFO", [](const sandbox& b) {
         fs::remove(b.plugins / "counter.so");
         REQUIRE(::mkfifo((b.plugins / "counter.so").c_str(), 0600) == 0);
       },
       "not a regular file", {}},
  };
  if (::geteuid() == 0)
    cases.push_back({"a library owned by another user",
                     v2_then([](const sandbox& b) { REQUIRE(::chown((b.plugins / "counter.so").c_str(), 65534, 65534) == 0); }),
                     "owned by uid 65534", [](hr::trust_checks& t) { t.owner = false; }});
  else
    MESSAGE("not root: the owner check is not tested");
  for (auto& c : cases) {
    check_refused({c.what, c.install, hr::errc::untrusted_file, {c.says}, {}, false, false});
    if (!c.relax) continue;
    // Relaxed, the same file loads.
    CAPTURE(c.what);
    sandbox box;
    box.install("counter_v1");
    asio::io_context io;
    auto opts = box.opts();
    c.relax(opts.trust);
    reloader r(io.get_executor(), opts);
    run(io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      c.install(box);
      co_await r.async_reload_plugin("counter", use_awaitable);
      CHECK(r.info("counter")->version == "2.0.0");
      co_await r.async_stop(use_awaitable);
    });
  }
}

TEST_CASE("trust checks: a symlink inside the plugin directories is fine; refusals at start name the file") {
  sandbox box;
  fs::create_directories(box.plugins / "builds");
  fs::copy_file(sandbox::built("counter_v1"), box.plugins / "builds" / "counter-1.0.0.so");
  fs::create_symlink("builds/counter-1.0.0.so", box.plugins / "counter.so");
  box.install("other_iface", "other.so");
  fs::permissions(box.plugins / "other.so", fs::perms(0666));
  asio::io_context io;
  auto opts = box.opts();
  opts.verbosity = hr::log_level::off;
  opts.exclude = {"counter-*"}; // the build directory's file is the symlink's target, not a plugin of its own
  reloader r(io.get_executor(), opts);
  recorder rec;
  rec.attach(r);
  run(io, [&]() -> awaitable<void> {
    auto [ec] = co_await r.async_start(asio::as_tuple(use_awaitable));
    CHECK(ec == hr::errc::untrusted_file);
    auto failed = co_await rec.next(hr::event_kind::load_failed);
    CHECK(failed.error.message.find((box.plugins / "other.so").string() + " was refused") != std::string::npos);
    CHECK(r.try_get("counter"));
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("shadow copies are private: directory 0700, files 0500") {
  harness h;
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    std::size_t files = 0;
    for (auto& e : fs::recursive_directory_iterator(box.shadow)) {
      struct stat st{};
      REQUIRE(::stat(e.path().c_str(), &st) == 0);
      if (S_ISDIR(st.st_mode)) CHECK((st.st_mode & 0777) == 0700);
      if (S_ISREG(st.st_mode) && e.path().extension() == ".so") {
        CHECK((st.st_mode & 0777) == 0500); // the copy, and the empty file ready for the next
        files += st.st_size > 0;
      }
    }
    CHECK(files == 1);
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("a plugin directory without read permission: a clear error at start, or skipped when allowed") {
  // Root reads everything, so this runs as an unprivileged user (nobody) in a child process.
  sandbox box;
  auto locked = box.root / "locked";
  fs::create_directories(locked);
  fs::permissions(locked, fs::perms::none);
  auto shadow = fs::temp_directory_path() / ("hotreload-nobody-" + std::to_string(::getpid()));
  auto attempt = [&](bool allow_missing) {
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      if (::geteuid() == 0 && (::setresgid(65534, 65534, 65534) != 0 || ::setresuid(65534, 65534, 65534) != 0))
        ::_exit(10);
      auto opts = box.opts();
      opts.plugin_dirs = {locked};
      opts.shadow_dir = shadow;
      opts.allow_missing_dirs = allow_missing;
      std::string logged;
      opts.sink = [&](const hr::log_record& l) { logged += std::string(l.message) + "\n"; };
      asio::io_context io;
      int code = 20;
      {
        reloader r(io.get_executor(), opts);
        r.async_start([&](hr::error_code ec) {
          bool named = logged.find(locked.string()) != std::string::npos &&
                       logged.find("Permission denied") != std::string::npos;
          if (allow_missing) code = !ec && named ? 0 : 21;
          else code = ec == hr::errc::bad_plugin_dir ? 0 : 22;
        });
        io.run();
      }
      ::_exit(code);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
  };
  CHECK(attempt(false) == 0);
  CHECK(attempt(true) == 0);
  std::error_code ec;
  fs::remove_all(shadow, ec);
}

TEST_CASE("trust checks apply to the directories of HOTRELOAD_PLUGIN_PATHS too") {
  sandbox box, extra;
  extra.install("greeter_named", "other.so");
  fs::permissions(extra.plugins, fs::perms(0777));
  ::setenv("HOTRELOAD_TRUST_TEST_PATHS", extra.plugins.c_str(), 1);
  box.install("counter_v1");
  asio::io_context io;
  auto opts = box.opts();
  opts.paths_env = "HOTRELOAD_TRUST_TEST_PATHS";
  opts.verbosity = hr::log_level::off;
  reloader r(io.get_executor(), opts);
  run(io, [&]() -> awaitable<void> {
    auto [ec] = co_await r.async_start(asio::as_tuple(use_awaitable));
    CHECK(ec == hr::errc::untrusted_file);
    CHECK(r.try_get("counter"));
    CHECK(!r.try_get("other"));
    co_await r.async_stop(use_awaitable);
  });
  ::unsetenv("HOTRELOAD_TRUST_TEST_PATHS");
}
