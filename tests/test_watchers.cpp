// Automatic reload: the same behaviour, file by file, for every shipped Watcher policy.
#include <hotreload/watcher/inotify_watcher.hpp>
#include <hotreload/watcher/polling_watcher.hpp>

#include "support.hpp"

#include <fcntl.h>
#include <unistd.h>

using namespace test;

namespace {

constexpr auto debounce = 100ms; // sandbox::opts()

template <class W>
using watched = basic_harness<W>;

// Long enough for any reaction to a change to have started: several debounce windows
// and poll intervals, with room for a loaded CI machine.
constexpr auto quiet = 1000ms;

// Writes `bytes` over `file` in place, as a linker does: truncate, then chunks, with a
// short pause and then a pause longer than the debounce window and the poll interval.
awaitable<void> write_like_a_linker(const fs::path& file, const std::string& bytes) {
  int fd = ::open(file.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  REQUIRE(fd >= 0);
  auto put = [&](std::size_t from, std::size_t to) {
    REQUIRE(::write(fd, bytes.data() + from, to - from) == static_cast<ssize_t>(to - from));
  };
  auto third = bytes.size() / 3;
  put(0, third);
  co_await sleep_for(5ms);
  put(third, 2 * third);
  co_await sleep_for(3 * debounce);
  put(2 * third, bytes.size());
  ::close(fd);
}

std::string contents(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

} // namespace

#define WATCHERS hr::inotify_watcher, hr::polling_watcher

TEST_CASE_TEMPLATE("a library renamed into place is reloaded once, with its state", W, WATCHERS) {
  watched<W> h(nullptr);
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    co_await call_increment(r);
    co_await call_increment(r);
    box.install("counter_v2");
    auto done = co_await rec.next(hr::event_kind::reloaded);
    CHECK(done.new_version == "2.0.0");
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "2.0.0");
    CHECK(p->count() == 2);
    p.reset();
    co_await sleep_for(quiet);
    CHECK(rec.count(hr::event_kind::reload_started) == 1);
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE_TEMPLATE("a library written in place in several steps is reloaded once, with the final bytes", W,
                   WATCHERS) {
  watched<W> h(nullptr);
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    co_await write_like_a_linker(box.plugins / "counter.so", contents(sandbox::built("counter_v2")));
    co_await rec.next(hr::event_kind::reloaded);
    CHECK((co_await r.async_get("counter", use_awaitable))->version() == "2.0.0");
    co_await sleep_for(quiet);
    CHECK(rec.count(hr::event_kind::reloaded) == 1);
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE_TEMPLATE("50 changes inside one debounce window give one reload, with the last bytes", W, WATCHERS) {
  watched<W> h([](hr::options& o) { o.debounce = 1000ms; });
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    for (int i = 0; i < 50; ++i) box.install(i % 2 ? "counter_v2" : "counter_v1");
    auto done = co_await rec.next(hr::event_kind::reloaded);
    CHECK(done.new_version == "2.0.0");
    co_await sleep_for(2 * quiet);
    CHECK(rec.count(hr::event_kind::reload_started) == 1);
    CHECK((co_await r.async_get("counter", use_awaitable))->version() == "2.0.0");
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE_TEMPLATE("new libraries load: next to the others, and deep in a tree made by one mkdir -p", W, WATCHERS) {
  watched<W> h(nullptr);
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    box.install("greeter_named", "other.so");
    co_await rec.next([](auto& e) { return e.kind == hr::event_kind::loaded && e.plugin == "other"; });
    co_await r.async_stop(use_awaitable);
    fs::remove(box.plugins / "other.so");
    co_await r.async_start(use_awaitable);
    fs::create_directories(box.plugins / "a" / "b" / "c");
    box.install("greeter_named", "a/b/c/deep.so");
    co_await rec.next([](auto& e) { return e.kind == hr::event_kind::loaded && e.plugin == "other"; });
    CHECK(r.info("other")->path == box.plugins / "a" / "b" / "c" / "deep.so");
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE_TEMPLATE("a deleted library: kept serving by default, unloaded on request", W, WATCHERS) {
  SUBCASE("keep") {
    watched<W> h(nullptr);
    [[maybe_unused]] auto& box = h.box;
    [[maybe_unused]] auto& io = h.io;
    [[maybe_unused]] auto& r = h.r;
    [[maybe_unused]] auto& rec = h.rec;
    run(io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      fs::remove(box.plugins / "counter.so");
      co_await rec.next(hr::event_kind::file_removed);
      CHECK(r.try_get("counter"));
      // Rebuilt under the same name: it reloads.
      box.install("counter_v2");
      co_await rec.next(hr::event_kind::reloaded);
      CHECK(r.try_get("counter")->version() == "2.0.0");
      co_await r.async_stop(use_awaitable);
    });
  }
  SUBCASE("unload") {
    watched<W> h([](hr::options& o) { o.on_remove = hr::remove_action::unload; });
    [[maybe_unused]] auto& box = h.box;
    [[maybe_unused]] auto& io = h.io;
    [[maybe_unused]] auto& r = h.r;
    [[maybe_unused]] auto& rec = h.rec;
    run(io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      fs::remove(box.plugins / "counter.so");
      co_await rec.next(hr::event_kind::stopped);
      CHECK(!r.info("counter"));
      co_await rec.next(hr::event_kind::unloaded);
      CHECK(mapped_under(box.shadow).empty());
      // Nor is the file made ahead for its next copy left, nor kept open.
      CHECK(copies_under(box.shadow, true).empty());
      CHECK(open_under(box.shadow).empty());
      co_await r.async_stop(use_awaitable);
    });
  }
}

TEST_CASE_TEMPLATE("editor temporaries, hidden files and other files never reload anything", W, WATCHERS) {
  watched<W> h([](hr::options& o) { o.exclude = {"*_skip.so"}; });
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    auto v2 = contents(sandbox::built("counter_v2"));
    for (auto name : {"counter.so.swp", "counter.so~", ".#counter.so", ".hidden.so", "notes.txt", "counter_skip.so"}) {
      std::ofstream(box.plugins / name, std::ios::binary) << v2;
    }
    co_await sleep_for(quiet);
    CHECK(rec.count(hr::event_kind::reload_started) == 0);
    CHECK(rec.count(hr::event_kind::load_failed) == 0);
    box.install("counter_v2"); // and the watcher is alive
    co_await rec.next(hr::event_kind::reloaded);
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE_TEMPLATE("two changes in the same second are two reloads", W, WATCHERS) {
  watched<W> h([](hr::options& o) { o.debounce = 0ms; });
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    box.install("counter_v2");
    co_await rec.next(hr::event_kind::reloaded);
    // In place this time: same inode; the size and the nanosecond mtime tell.
    std::ofstream(box.plugins / "counter.so", std::ios::binary | std::ios::trunc) << contents(sandbox::built("counter_v1"));
    auto second = co_await rec.next(hr::event_kind::reloaded);
    CHECK(second.new_version == "1.0.0");
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE_TEMPLATE("start, stop, start: nothing is watched while stopped", W, WATCHERS) {
  watched<W> h(nullptr);
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    co_await call_increment(r);
    box.install("counter_v2");
    co_await r.async_stop(use_awaitable); // also drops the pending debounced change
    co_await sleep_for(quiet);
    CHECK(rec.count(hr::event_kind::reload_started) == 0);
    co_await r.async_start(use_awaitable);
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "2.0.0");
    CHECK(p->count() == 1); // json_state kept it across stop/start
    p.reset();
    box.install("counter_v1");
    auto done = co_await rec.next(hr::event_kind::reloaded);
    CHECK(done.new_version == "1.0.0");
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE_TEMPLATE("a manual reload and a watched change of the same file make one reload", W, WATCHERS) {
  watched<W> h(nullptr);
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    box.install("counter_v2");
    co_await r.async_reload_plugin("counter", use_awaitable);
    co_await sleep_for(quiet);
    CHECK(rec.count(hr::event_kind::reload_started) == 1);
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE_TEMPLATE("lost events: an injected overflow rescans and reports it", W, WATCHERS) {
  std::vector<std::string> lines;
  std::mutex mu;
  watched<W> h([&](hr::options& o) {
    o.verbosity = hr::log_level::info;
    o.sink = [&](const hr::log_record& l) {
      std::lock_guard lk(mu);
      lines.emplace_back(l.message);
    };
  });
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    r.watcher().inject_overflow();
    co_await sleep_for(quiet);
    {
      std::lock_guard lk(mu);
      CHECK(std::any_of(lines.begin(), lines.end(),
                        [](auto& l) { return l.find("Rescanning every plugin directory") != std::string::npos; }));
    }
    CHECK(rec.count(hr::event_kind::reload_started) == 0); // nothing changed, nothing reloads
    co_await r.async_stop(use_awaitable);
  });
}

namespace {
// A Watcher written by a user: reports what the test tells it to (here, only overflows).
struct scripted_watcher {
  hr::change_handler handler;
  hr::error_info start(const std::vector<fs::path>&, hr::change_handler h) {
    handler = std::move(h);
    return {};
  }
  void stop() { handler = nullptr; }
};
static_assert(hr::watcher<scripted_watcher>);
} // namespace

TEST_CASE("lost events: a rescan reloads what changed, loads what is new, and nothing else") {
  watched<scripted_watcher> h(nullptr);
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    co_await call_increment(r);
    box.install("counter_v2");               // unseen by the watcher
    box.install("greeter_named", "other.so"); // likewise
    r.watcher().handler({{hr::change_kind::rescan, box.plugins}});
    co_await rec.next(hr::event_kind::reloaded); // one batch: "other" started before it
    CHECK(r.info("other")->serving);
    CHECK(rec.count(hr::event_kind::reload_started) == 1);
    CHECK((co_await call_increment(r)) == 2);
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("plugin directories from the environment variable") {
  sandbox a, b;
  a.install("counter_v1");
  b.install("greeter_named", "other.so");
  ::setenv("HOTRELOAD_TEST_PATHS", (a.plugins.string() + ":" + b.plugins.string()).c_str(), 1);
  asio::io_context io;
  auto opts = a.opts();
  opts.plugin_dirs.clear();
  opts.paths_env = "HOTRELOAD_TEST_PATHS";
  hr::hot_reloader<test::counter_iface> r(io.get_executor(), opts);
  recorder rec;
  rec.attach(r);
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    CHECK(r.plugins().size() == 2);
    b.install("greeter_named", "other2.so"); // declares "other" too: a duplicate, refused
    auto failed = co_await rec.next(hr::event_kind::load_failed);
    CHECK(failed.error.code == hr::errc::duplicate_plugin);
    b.install("counter_v2", "other.so"); // plugin "other"'s file now declares "counter": refused
    failed = co_await rec.next(hr::event_kind::reload_failed);
    CHECK(failed.error.code == hr::errc::name_mismatch);
    CHECK(r.try_get("other")->version() == "1.0.0");
    co_await r.async_stop(use_awaitable);
  });
  ::unsetenv("HOTRELOAD_TEST_PATHS");
}

TEST_CASE("missing plugin directories: an error, or a warning when allowed") {
  sandbox box;
  asio::io_context io;
  auto opts = box.opts();
  opts.plugin_dirs.push_back(box.root / "missing");
  SUBCASE("error") {
    hr::hot_reloader<test::counter_iface> r(io.get_executor(), opts);
    run(io, [&]() -> awaitable<void> {
      auto [ec] = co_await r.async_start(asio::as_tuple(use_awaitable));
      CHECK(ec == hr::errc::bad_plugin_dir);
    });
  }
  SUBCASE("warning") {
    opts.allow_missing_dirs = true;
    opts.verbosity = hr::log_level::error;
    box.install("counter_v1");
    hr::hot_reloader<test::counter_iface> r(io.get_executor(), opts);
    run(io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      CHECK(r.try_get("counter"));
      co_await r.async_stop(use_awaitable);
    });
  }
}

TEST_CASE_TEMPLATE("the plugin directory deleted while watched: the plugin serves on, and a new one is watched",
                   W, WATCHERS) {
  watched<W> h([](hr::options& o) { o.verbosity = hr::log_level::off; });
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    co_await call_increment(r);
    fs::remove_all(box.plugins);
    co_await rec.next(hr::event_kind::file_removed);
    CHECK(co_await call_increment(r) == 2); // on_remove = keep: the loaded version serves on
    // The directory comes back with a new build in it: it is watched again.
    fs::create_directories(box.plugins);
    box.install("counter_v2");
    co_await rec.next(hr::event_kind::reloaded);
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "2.0.0");
    CHECK(p->count() == 2);
    p.reset();
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE_TEMPLATE("a plugin directory that appears after start is watched once it exists", W, WATCHERS) {
  sandbox box;
  auto later = box.root / "later";
  auto opts = box.opts();
  opts.plugin_dirs = {later};
  opts.allow_missing_dirs = true;
  opts.verbosity = hr::log_level::error;
  asio::io_context io;
  hr::basic_hot_reloader<test::counter_iface, W> r(io.get_executor(), opts);
  recorder rec;
  rec.attach(r);
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    fs::create_directories(later);
    box.install("counter_v1", "../later/counter.so");
    co_await rec.next(hr::event_kind::loaded);
    CHECK(r.try_get("counter"));
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE_TEMPLATE("a library replaced again while it is being reloaded: the last build serves, state kept", W,
                   WATCHERS) {
  watched<W> h([](hr::options& o) { o.debounce = 0ms; });
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    co_await call_increment(r);
    auto held = co_await r.async_get("counter", use_awaitable); // keeps the reload in its quiesce step
    box.install("counter_v2");
    co_await rec.next([](auto& e) { return e.step == hr::reload_step::library_loaded; });
    box.install("counter_state2"); // lands during the reload
    held.reset();
    co_await rec.next(hr::event_kind::reloaded);
    co_await rec.next(hr::event_kind::reloaded);
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(r.info("counter")->state_version == 2); // counter_state2
    CHECK(p->count() == 1);
    p.reset();
    co_await r.async_stop(use_awaitable);
  });
}
