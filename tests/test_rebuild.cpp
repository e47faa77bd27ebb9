// The edit-save-serve loop: rebuild_watcher runs a real build (the compiler on a plugin's
// source) when a source changes, and the library it writes is reloaded; a broken edit
// reports the compiler's error while the old version serves; saves during a build lead to
// one more build; stopping ends the build's whole process group. And the host's acceptance
// check, the last word before a new version serves.
#include "support.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/streambuf.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

using namespace test;

namespace {

using rebuilding = basic_harness<hr::rebuild_watcher<>>;

// The source of the counter plugin at `version`, with `extra` appended.
std::string plugin_source(const std::string& version, const std::string& extra = {}) {
  return "#define PLUGIN_VERSION \"" + version + "\"\n#include \"" TEST_SOURCE_ROOT "/tests/plugins/counter_plugin.hpp\"\n" +
         extra;
}

// Writes a file whole, by rename (as editors save).
void save(const fs::path& file, const std::string& text) {
  auto tmp = file.parent_path() / ("." + file.filename().string() + ".swp");
  std::ofstream(tmp) << text;
  fs::rename(tmp, file);
}

// The compiler the tests were built with, on the plugin's source, writing the library in place.
std::string compile_command(const fs::path& src, const fs::path& out) {
  return std::string(TEST_CXX) + " -std=c++20 -O0 -fPIC -shared -pthread -DBOOST_ALL_NO_LIB -DBOOST_DLL_USE_STD_FS " +
         TEST_PLUGIN_FLAGS + " -I" TEST_SOURCE_ROOT "/include -I" TEST_SOURCE_ROOT "/tests " + src.string() + " -o " +
         out.string();
}

// Log lines, in order, that a coroutine can wait on.
struct log_book {
  std::mutex mu;
  std::vector<std::string> lines;
  std::vector<std::function<void()>> wakers;

  hr::log_sink sink() {
    return [this](const hr::log_record& r) {
      std::vector<std::function<void()>> w;
      {
        std::lock_guard lk(mu);
        lines.emplace_back(r.message);
        w.swap(wakers);
      }
      for (auto& f : w) f();
    };
  }
  // Until `pred` holds for the lines so far (60 s at most).
  template <class Pred>
  awaitable<void> until(Pred pred) {
    for (;;) {
      auto t = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor, 60s);
      {
        std::lock_guard lk(mu);
        if (pred(lines)) co_return;
        wakers.push_back([t] { asio::post(t->get_executor(), [t] { t->cancel(); }); });
      }
      auto [ec] = co_await t->async_wait(asio::as_tuple(use_awaitable));
      if (!ec) throw std::runtime_error("timed out waiting for a log line");
    }
  }
};

// A named pipe the test reads from or writes to without blocking its thread.
struct fifo {
  fs::path path;
  int fd = -1;
  explicit fifo(fs::path p) : path(std::move(p)) {
    REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
    fd = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC); // never blocks, and the pipe stays
    REQUIRE(fd >= 0);
  }
  ~fifo() { ::close(fd); }
  void put(const std::string& line) { REQUIRE(::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size())); }
  awaitable<std::string> get_line() {
    asio::posix::stream_descriptor s(co_await asio::this_coro::executor, ::dup(fd));
    asio::streambuf buf;
    auto n = co_await asio::async_read_until(s, buf, '\n', use_awaitable);
    std::string line(asio::buffers_begin(buf.data()), asio::buffers_begin(buf.data()) + static_cast<std::ptrdiff_t>(n));
    co_return line;
  }
};

// Waits until process `pid` has ended (a pidfd is readable then, zombie or reaped); false
// after 10 s.
awaitable<bool> ended(pid_t pid) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) co_return errno == ESRCH; // gone already
  asio::posix::stream_descriptor d(co_await asio::this_coro::executor, fd);
  asio::steady_timer valve(co_await asio::this_coro::executor, 10s);
  valve.async_wait([&](boost::system::error_code ec) {
    if (!ec) d.cancel();
  });
  auto [ec] = co_await d.async_wait(asio::posix::descriptor_base::wait_read, asio::as_tuple(use_awaitable));
  valve.cancel();
  co_return !ec;
}

} // namespace

TEST_CASE("edit, save, serving: a source edit is built and reloaded; a broken edit reports the compiler's error and "
          "the old version serves on; the fix serves") {
  fs::path src, renaming;
  rebuilding h([&](hr::options& o) {
    fs::path lib = fs::path(o.plugin_dirs[0]) / "counter.so", aside = fs::path(o.plugin_dirs[0]) / ".counter.so.new";
    src = lib.parent_path().parent_path() / "src";
    renaming = src.parent_path() / "renaming";
    // The library is written in place (as GNU ld does), or aside and renamed into place once
    // `renaming` exists.
    o.rebuild.command = "if [ -e " + renaming.string() + " ]; then " + compile_command(src / "counter.cpp", aside) +
                        " && mv " + aside.string() + " " + lib.string() + "; else " +
                        compile_command(src / "counter.cpp", lib) + "; fi";
    o.rebuild.sources = {src};
  });
  auto& r = h.r;
  auto& rec = h.rec;
  fs::create_directories(src);
  save(src / "counter.cpp", plugin_source("1.0.0"));
  run(h.io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    CHECK(co_await call_increment(r) == 1);
    CHECK(co_await call_increment(r) == 2);

    save(src / "counter.cpp", plugin_source("2.0.0"));
    auto started = co_await rec.next(hr::event_kind::build_started);
    CHECK(started.detail == r.get_options().rebuild.command);
    auto built = co_await rec.next([](auto& e) { return e.kind == hr::event_kind::build_succeeded ||
                                                        e.kind == hr::event_kind::build_failed; });
    REQUIRE_MESSAGE(built.kind == hr::event_kind::build_succeeded, built.error.message);
    CHECK(built.duration > 0ms);
    auto reloaded = co_await rec.next(hr::event_kind::reloaded);
    CHECK(reloaded.new_version == "2.0.0");
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "2.0.0");
    CHECK(p->increment() == 3); // the state came along
    p = {};

    // A compile error: reported with the compiler's words; 2.0.0 serves on.
    save(src / "counter.cpp", plugin_source("3.0.0", "int broken = undeclared_name;\n"));
    co_await rec.next(hr::event_kind::build_started);
    auto failed = co_await rec.next([](auto& e) { return e.kind == hr::event_kind::build_succeeded ||
                                                         e.kind == hr::event_kind::build_failed; });
    REQUIRE(failed.kind == hr::event_kind::build_failed);
    CHECK(failed.error.code == hr::errc::build_failed);
    CHECK(failed.error.message.find("exit status 1") != std::string::npos);
    CHECK(failed.error.message.find("keep serving") != std::string::npos);
    CHECK(failed.detail.find("undeclared_name") != std::string::npos);
    CHECK(failed.detail.find("error") != std::string::npos);
    CHECK(r.try_get("counter")->version() == "2.0.0");
    CHECK(co_await call_increment(r) == 4);

    // The fix, written aside and renamed into place this time.
    std::ofstream(renaming).put('\n');
    save(src / "counter.cpp", plugin_source("3.0.0"));
    co_await rec.next(hr::event_kind::build_succeeded);
    reloaded = co_await rec.next(hr::event_kind::reloaded);
    CHECK(reloaded.old_version == "2.0.0");
    CHECK(reloaded.new_version == "3.0.0");
    CHECK(co_await call_increment(r) == 5);
    CHECK(rec.count(hr::event_kind::reload_failed) == 0);
    CHECK(r.watcher().builds() == 3);
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("five saves during one build lead to exactly one more build") {
  log_book book;
  std::unique_ptr<fifo> gate;
  fs::path src, runs;
  rebuilding h([&](hr::options& o) {
    src = fs::path(o.plugin_dirs[0]).parent_path() / "src";
    runs = src.parent_path() / "runs.txt";
    gate = std::make_unique<fifo>(src.parent_path() / "gate");
    // A build that takes as long as the test says: it waits for a line on the gate.
    o.rebuild.command = "echo run >> " + runs.string() + "; read line < " + gate->path.string();
    o.rebuild.sources = {src};
    o.verbosity = hr::log_level::debug;
    o.sink = book.sink();
  });
  auto& r = h.r;
  auto& rec = h.rec;
  fs::create_directories(src);
  run(h.io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    save(src / "a.cpp", "// 0");
    co_await rec.next(hr::event_kind::build_started);
    for (int i = 1; i <= 5; ++i) save(src / ("f" + std::to_string(i) + ".hpp"), "// " + std::to_string(i));
    // Every save seen, and then the decision to build once more.
    co_await book.until([](const std::vector<std::string>& lines) {
      std::size_t saves = 0, after = 0;
      for (auto& l : lines) {
        if (l.find("Source changed: ") != std::string::npos && l.find("/f") != std::string::npos) ++saves;
        if (saves == 5 && l.find("one more build") != std::string::npos) ++after;
      }
      return after > 0;
    });
    gate->put("go\n");
    co_await rec.next(hr::event_kind::build_succeeded);
    co_await rec.next(hr::event_kind::build_started);
    gate->put("go\n");
    co_await rec.next(hr::event_kind::build_succeeded);
    // The next build would have started before this event was delivered (same handler).
    CHECK(r.watcher().builds() == 2);
    CHECK(rec.count(hr::event_kind::build_started) == 2);
    std::ifstream in(runs);
    std::string all((std::istreambuf_iterator<char>(in)), {});
    CHECK(all == "run\nrun\n");
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("stopping the reloader during a build ends the build's whole process group") {
  std::unique_ptr<fifo> out;
  fs::path src;
  rebuilding h([&](hr::options& o) {
    src = fs::path(o.plugin_dirs[0]).parent_path() / "src";
    out = std::make_unique<fifo>(src.parent_path() / "pids");
    // The shell starts a long child of its own (as make or ninja start compilers), says both
    // process ids, and waits.
    o.rebuild.command = "sleep 300 & echo $$ $! > " + out->path.string() + "; wait";
    o.rebuild.sources = {src};
  });
  auto& r = h.r;
  auto& rec = h.rec;
  fs::create_directories(src);
  run(h.io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    save(src / "a.cpp", "// 0");
    auto line = co_await out->get_line();
    pid_t shell = 0, child = 0;
    std::istringstream(line) >> shell >> child;
    REQUIRE(shell > 0);
    REQUIRE(child > 0);
    CHECK(::getpgid(child) == shell); // one group: the build's own
    co_await r.async_stop(use_awaitable);
    auto failed = co_await rec.next(hr::event_kind::build_failed);
    CHECK(failed.error.message.find("was stopped: the reloader stopped") != std::string::npos);
    CHECK(co_await ended(shell));
    CHECK(co_await ended(child));
  });
}

TEST_CASE("what starts a build: sources only, never editors' files, other files or a build tree's; a build past its "
          "time limit is stopped") {
  log_book book;
  fs::path src;
  rebuilding h([&](hr::options& o) {
    src = fs::path(o.plugin_dirs[0]).parent_path() / "src";
    o.rebuild.command = "sleep 30";
    o.rebuild.timeout = 200ms;
    o.rebuild.sources = {src};
    o.verbosity = hr::log_level::debug;
    o.sink = book.sink();
  });
  auto& r = h.r;
  auto& rec = h.rec;
  fs::create_directories(src / "build" / "gen");
  std::ofstream(src / "build" / "build.ninja").put('\n'); // a build directory inside the sources
  run(h.io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    save(src / "build" / "gen" / "generated.cpp", "// written by the build");
    save(src / ".a.cpp.swp", "x");
    save(src / "notes.txt", "x");
    save(src / "a.cpp", "// 1");
    auto failed = co_await rec.next(hr::event_kind::build_failed);
    CHECK(failed.error.message.find("was stopped: it ran longer than options.rebuild.timeout (200 ms)") !=
          std::string::npos);
    CHECK(failed.duration < 10s);
    CHECK(r.watcher().builds() == 1);
    std::lock_guard lk(book.mu);
    std::vector<std::string> changed;
    for (auto& l : book.lines)
      if (l.starts_with("Source changed: ")) changed.push_back(l);
    CHECK(changed == std::vector<std::string>{"Source changed: " + (src / "a.cpp").string()});
  });
}

TEST_CASE("rebuild set-up: a clear error for half a set-up; no command is the inner watcher alone; "
          "compile_commands.json gives the sources") {
  {
    rebuilding h([](hr::options& o) { o.rebuild.sources = {"."}; });
    run(h.io, [&]() -> awaitable<void> {
      auto [err] = co_await h.r.async_start(asio::as_tuple(use_awaitable));
      CHECK(err == hr::errc::bad_rebuild_setup);
      CHECK(err.message().size() > 0);
      CHECK(static_cast<bool>(h.r.try_get("counter"))); // the plugins serve regardless
      co_await h.r.async_stop(use_awaitable);
    });
  }
  {
    rebuilding h([](hr::options& o) { o.rebuild.command = "true"; });
    run(h.io, [&]() -> awaitable<void> {
      auto [err] = co_await h.r.async_start(asio::as_tuple(use_awaitable));
      CHECK(err == hr::errc::bad_rebuild_setup);
      co_await h.r.async_stop(use_awaitable);
    });
  }
  {
    rebuilding h;
    run(h.io, [&]() -> awaitable<void> {
      co_await h.r.async_start(use_awaitable);
      h.box.install("counter_v2");
      auto reloaded = co_await h.rec.next(hr::event_kind::reloaded);
      CHECK(reloaded.new_version == "2.0.0");
      CHECK(h.r.watcher().builds() == 0);
      co_await h.r.async_stop(use_awaitable);
    });
  }
  {
    fs::path root;
    rebuilding h([&](hr::options& o) {
      root = fs::path(o.plugin_dirs[0]).parent_path();
      o.rebuild.command = "true";
      o.rebuild.compile_commands = root / "build" / "compile_commands.json";
    });
    fs::create_directories(root / "src" / "a");
    fs::create_directories(root / "src" / "b");
    fs::create_directories(root / "build");
    std::ofstream(root / "build" / "compile_commands.json") << R"([
      {"directory": ")" << (root / "build").string() << R"(", "file": "../src/a/x.cpp", "command": "c++ -c ../src/a/x.cpp"},
      {"directory": ")" << (root / "build").string() << R"(", "file": ")" << (root / "src/b/y.cpp").string() << R"(", "command": "c++"},
      {"directory": ")" << (root / "build").string() << R"(", "file": "generated.cpp", "command": "c++"}
    ])";
    run(h.io, [&]() -> awaitable<void> {
      co_await h.r.async_start(use_awaitable);
      CHECK(h.r.watcher().sources() == std::vector<fs::path>{root / "src" / "a", root / "src" / "b"});
      co_await h.r.async_stop(use_awaitable);
    });
  }
  {
    rebuilding h([](hr::options& o) {
      o.rebuild.command = "true";
      o.rebuild.compile_commands = "/nonexistent/compile_commands.json";
    });
    run(h.io, [&]() -> awaitable<void> {
      auto [err] = co_await h.r.async_start(asio::as_tuple(use_awaitable));
      CHECK(err == hr::errc::bad_rebuild_setup);
      CHECK(err.message().size() > 0);
      co_await h.r.async_stop(use_awaitable);
    });
  }
}

TEST_CASE("acceptance check: sees both versions and the new instance; a refusal rolls back with its reason") {
  harness h;
  auto& r = h.r;
  auto& rec = h.rec;
  std::vector<std::string> asked;
  r.set_acceptance_check([&](hr::candidate<test::counter_iface> c) -> awaitable<hr::verdict> {
    asked.push_back((c.old_version ? c.old_version->version : std::string("none")) + "->" + c.new_version.version +
                    " count " + std::to_string(c.instance.count()));
    if (c.new_version.version == "2.0.0") co_return hr::verdict::refuse("2.0.0 is not allowed here");
    co_return hr::verdict::accept();
  });
  run(h.io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    CHECK(co_await call_increment(r) == 1);
    CHECK(co_await call_increment(r) == 2);
    h.box.journal->take();
    h.box.install("counter_v2");
    auto [err] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    CHECK(err == hr::errc::not_accepted);
    auto failed = co_await rec.next(hr::event_kind::reload_failed);
    CHECK(failed.error.code == hr::errc::not_accepted);
    CHECK(failed.error.message.find("2.0.0 is not allowed here") != std::string::npos);
    CHECK(failed.error.message.find("counter") != std::string::npos);
    auto back = co_await rec.next(hr::event_kind::rolled_back);
    CHECK(back.error.message.find("2.0.0 is not allowed here") != std::string::npos);
    CHECK(r.try_get("counter")->version() == "1.0.0");
    CHECK(co_await call_increment(r) == 3); // with its state
    // The refused instance came up (state, on_reload_async) and went down (teardown_async).
    CHECK(h.box.journal->count("2.0.0:on_reload") == 1);
    CHECK(h.box.journal->count("2.0.0:teardown") == 1);
    CHECK(asked == std::vector<std::string>{"none->1.0.0 count 0", "1.0.0->2.0.0 count 2"});
    // The check is not asked about the rollback; a check removed asks nothing.
    r.set_acceptance_check({});
    co_await r.async_reload_plugin("counter", use_awaitable);
    CHECK(r.try_get("counter")->version() == "2.0.0");
    CHECK(asked.size() == 2);
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("acceptance check on a first load: refused, the plugin is not started; a check past its time limit is "
          "refused") {
  {
    harness h;
    h.r.set_acceptance_check([](hr::candidate<test::counter_iface>) -> awaitable<hr::verdict> {
      co_return hr::verdict::refuse("not today");
    });
    run(h.io, [&]() -> awaitable<void> {
      auto [err] = co_await h.r.async_start(asio::as_tuple(use_awaitable));
      CHECK(err == hr::errc::not_accepted);
      auto failed = co_await h.rec.next(hr::event_kind::load_failed);
      CHECK(failed.error.message.find("not today") != std::string::npos);
      CHECK(!h.r.try_get("counter"));
      auto [gerr, p] = co_await h.r.async_get("counter", asio::as_tuple(use_awaitable));
      CHECK(gerr);
      CHECK(h.box.journal->count("1.0.0:setup") == 1);
      CHECK(h.box.journal->count("1.0.0:teardown") == 1);
      CHECK(h.rec.count(hr::event_kind::loaded) == 0);
      co_await h.r.async_stop(use_awaitable);
    });
  }
  {
    harness h([](hr::options& o) { o.timeouts.accept = 200ms; });
    auto& r = h.r;
    run(h.io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      CHECK(co_await call_increment(r) == 1);
      r.set_acceptance_check([](hr::candidate<test::counter_iface>) -> awaitable<hr::verdict> {
        asio::steady_timer t(co_await asio::this_coro::executor, 30s); // cancelled when abandoned
        co_await t.async_wait(asio::as_tuple(use_awaitable));
        co_return hr::verdict::accept();
      });
      h.box.install("counter_v2");
      auto t0 = std::chrono::steady_clock::now();
      auto [err] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
      CHECK(std::chrono::steady_clock::now() - t0 < 10s);
      CHECK(err == hr::errc::not_accepted);
      auto failed = co_await h.rec.next(hr::event_kind::reload_failed);
      CHECK(failed.error.message.find("acceptance check did not finish within") != std::string::npos);
      CHECK(failed.error.message.find("options.timeouts.accept") != std::string::npos);
      CHECK(r.try_get("counter")->version() == "1.0.0");
      CHECK(co_await call_increment(r) == 2);
      co_await r.async_stop(use_awaitable);
    });
  }
}

TEST_CASE("a new version's calls (constructor, state, on_reload_async, the acceptance check) each have their own "
          "time limit; a late one is named, abandoned, and the calls after it are not made") {
  std::atomic<int> asked{0};
  auto check = [&](hr::candidate<test::counter_iface>) -> awaitable<hr::verdict> {
    ++asked;
    asio::steady_timer t(co_await asio::this_coro::executor, 150ms);
    co_await t.async_wait(asio::as_tuple(use_awaitable));
    co_return hr::verdict::accept();
  };
  {
    // on_reload_async takes 150 ms and so does the check: 300 ms in a row, each within its own 250.
    harness h([](hr::options& o) {
      o.timeouts.on_reload = 250ms;
      o.timeouts.accept = 250ms;
      o.plugin_config["counter"] = {{"delay_ms", 150}};
    });
    auto& r = h.r;
    r.set_acceptance_check(check);
    run(h.io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      CHECK(co_await call_increment(r) == 1);
      h.box.install("counter_v2");
      auto [ec] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
      const auto err = ec; // a name CHECK_MESSAGE can capture (clang 14)
      CHECK_MESSAGE(!err, err.message());
      CHECK(r.try_get("counter")->version() == "2.0.0");
      CHECK(co_await call_increment(r) == 2);
      CHECK(asked == 2); // the first load, the reload
      co_await r.async_stop(use_awaitable);
    });
  }
  {
    // on_reload_async of 2.0.0 never finishes: abandoned at its limit; the check is not asked.
    asked = 0;
    harness h([](hr::options& o) {
      o.timeouts.on_reload = 250ms;
      o.verbosity = hr::log_level::off;
      o.plugin_config["counter"] = {{"fail_hook", "on_reload"}, {"fail_how", "hang"}, {"fail_version", "2.0.0"}};
    });
    auto& r = h.r;
    r.set_acceptance_check(check);
    run(h.io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      CHECK(co_await call_increment(r) == 1);
      h.box.install("counter_v2");
      auto [err] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
      CHECK(err == hr::errc::hook_timeout);
      auto late = co_await h.rec.next(hr::event_kind::abandoned);
      CHECK(late.new_version == "2.0.0");
      CHECK_MESSAGE(late.error.message.find("on_reload_async did not finish within 250 ms") != std::string::npos,
                    late.error.message);
      CHECK(late.error.message.find("options.timeouts.on_reload") != std::string::npos);
      co_await h.rec.next(hr::event_kind::returned); // cancelled: it returns, and is reported
      CHECK(asked == 1); // the first load only
      CHECK(r.try_get("counter")->version() == "1.0.0");
      CHECK(co_await call_increment(r) == 2); // rolled back with its state
      co_await r.async_stop(use_awaitable);
    });
  }
}
