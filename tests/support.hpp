// What the test translation units share: real plugin files in a private directory, an
// event recorder to wait on the library's own events, and a runner for coroutine tests.
#ifndef HOTRELOAD_TESTS_SUPPORT_HPP
#define HOTRELOAD_TESTS_SUPPORT_HPP

#include <hotreload.hpp>

#include <doctest/doctest.h>

#include "plugins/counter_iface.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <set>
#include <thread>

namespace hr = hotreload;
namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;
using hr::awaitable;
using asio::use_awaitable;

namespace test {



// A private plugin directory and shadow directory, removed afterwards.
struct sandbox {
  fs::path root, plugins, shadow;
  std::shared_ptr<test::journal> journal = std::make_shared<test::journal>();

  sandbox() {
    static std::atomic<int> n{0};
    root = fs::temp_directory_path() / ("hotreload-test-" + std::to_string(::getpid()) + "-" + std::to_string(++n));
    plugins = root / "plugins";
    shadow = root / "shadow";
    fs::create_directories(plugins);
  }
  ~sandbox() {
    std::error_code ec;
    fs::remove_all(root, ec);
  }
  static fs::path built(const std::string& variant) { return fs::path(TEST_PLUGIN_DIR) / (variant + ".so"); }
  // Puts a built plugin in place by rename, the way a build should replace a library.
  void install(const std::string& variant, const std::string& file = "counter.so") const {
    auto target = plugins / file;
    auto tmp = target.parent_path() / ("." + target.filename().string() + ".tmp");
    fs::copy_file(built(variant), tmp, fs::copy_options::overwrite_existing);
    fs::rename(tmp, target);
  }
  void write(const std::string& bytes, const std::string& file = "counter.so") const {
    auto target = plugins / file;
    auto tmp = target.parent_path() / ("." + target.filename().string() + ".tmp");
    std::ofstream(tmp, std::ios::binary) << bytes;
    fs::rename(tmp, target);
  }
  hr::options opts() const {
    return hr::options{.plugin_dirs = {plugins},
                       .debounce = 100ms,
                       .paths_env = {}, // the environment of the test run must not add directories
                       .poll_interval = 20ms,
                       .shadow_dir = shadow,
                       .verbosity = hr::log_level::warning,
                       .shared = hr::shared_context(journal)};
  }
};

// Records events and lets a coroutine wait for one (the library's own events, no sleeps).
struct recorder {
  std::mutex mu;
  std::vector<hr::reload_event> events;
  std::vector<std::function<void()>> wakers;
  std::size_t cursor = 0;

  template <class Reloader>
  void attach(Reloader& r) {
    r.subscribe([this](const hr::reload_event& e) {
      std::vector<std::function<void()>> w;
      {
        std::lock_guard lk(mu);
        events.push_back(e);
        w.swap(wakers);
      }
      for (auto& f : w) f();
    });
  }
  // The next event (after the last one returned) that satisfies `pred`.
  template <class Pred>
  awaitable<hr::reload_event> next(Pred pred) {
    for (;;) {
      auto t = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor, 60s);
      {
        std::lock_guard lk(mu);
        while (cursor < events.size())
          if (pred(events[cursor++])) co_return events[cursor - 1];
        wakers.push_back([t] { asio::post(t->get_executor(), [t] { t->cancel(); }); });
      }
      auto [ec] = co_await t->async_wait(asio::as_tuple(use_awaitable));
      if (!ec) throw std::runtime_error("timed out waiting for an event");
    }
  }
  awaitable<hr::reload_event> next(hr::event_kind k) {
    return next([k](const hr::reload_event& e) { return e.kind == k; });
  }
  std::size_t count(hr::event_kind k) {
    std::lock_guard lk(mu);
    return std::count_if(events.begin(), events.end(), [k](auto& e) { return e.kind == k; });
  }
};

// Runs a test body on `io` with `threads` threads; the body's end stops the io_context.
template <class F>
void run(asio::io_context& io, F body, int threads = 1) {
  std::exception_ptr failure;
  std::atomic<bool> finished{false};
  asio::co_spawn(io, body(), [&](std::exception_ptr e) {
    failure = e;
    finished = true;
    io.stop();
  });
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back([&] { io.run(); });
  io.run();
  for (auto& t : pool) t.join();
  REQUIRE(finished);
  if (failure) std::rethrow_exception(failure);
}

// The plugin images of `dir` mapped in this process right now.
inline std::set<std::string> mapped_under(const fs::path& dir) {
  std::ifstream maps("/proc/self/maps");
  std::set<std::string> out;
  std::string line;
  while (std::getline(maps, line)) {
    auto pos = line.find(dir.string());
    if (pos != std::string::npos) out.insert(line.substr(pos));
  }
  return out;
}

// The `.so` files below `dir` that hold a copy (`empty`: those that do not; the loader keeps
// one empty file ready for each plugin's next copy).
inline std::set<fs::path> copies_under(const fs::path& dir, bool empty = false) {
  std::set<fs::path> out;
  for (auto& e : fs::recursive_directory_iterator(dir))
    if (e.path().extension() == ".so" && e.is_regular_file() && (e.file_size() == 0) == empty) out.insert(e.path());
  return out;
}

// The files under `dir` this process has open (the shadow directory's lock aside).
inline std::set<fs::path> open_under(const fs::path& dir) {
  std::set<fs::path> out;
  auto root = fs::canonical(dir).string() + "/";
  for (auto& e : fs::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    auto target = fs::read_symlink(e.path(), ec);
    if (!ec && target.string().starts_with(root) && target.filename() != ".lock") out.insert(target);
  }
  return out;
}

// Whether `done` becomes true within `limit`, for what happens on a thread of the library's
// own that sends no event; checked as fast as the scheduler allows, not after a sleep.
template <class Condition>
bool becomes_true(Condition done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::yield();
  }
  return true;
}

// becomes_true for a coroutine on the io_context: between checks it lets the io_context's other
// handlers run (the library hands it work too: a released version's unmapping starts there).
template <class Condition>
awaitable<bool> comes_true(Condition done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  auto until = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) co_return false;
    co_await asio::post(co_await asio::this_coro::executor, use_awaitable);
  }
  co_return true;
}

// One plugin directory with counter v1 installed, an io_context, a reloader on it and a
// recorder of its events; `tweak` adjusts the options first. Tests name its members with
// references (`auto& r = h.r;`), not a structured binding: clang 14 cannot capture
// structured bindings in lambdas.
template <class Watcher = hr::manual_watcher>
struct basic_harness {
  using reloader = hr::basic_hot_reloader<test::counter_iface, Watcher>;
  sandbox box;
  asio::io_context io;
  reloader r;
  recorder rec;

  explicit basic_harness(const std::function<void(hr::options&)>& tweak = {})
      : r(io.get_executor(), tweaked(box.opts(), tweak)) {
    box.install("counter_v1");
    rec.attach(r);
  }
  static hr::options tweaked(hr::options o, const std::function<void(hr::options&)>& tweak) {
    if (tweak) tweak(o);
    return o;
  }
};

// Reloads only when asked, so that each test controls every reload.
using reloader = hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher>;
using harness = basic_harness<>;

template <class Reloader>
awaitable<int> call_increment(Reloader& r) {
  auto p = co_await r.async_get("counter", use_awaitable);
  co_return p->increment();
}


// Opens `gate` after `limit` unless something opens it first: a test whose plugin code
// waits at the gate fails (its checks see the gate opened late) instead of hanging, should
// the library not do its part. Join the thread once the gate is open.
inline std::thread open_at_the_latest(test::journal& gate, std::chrono::seconds limit = std::chrono::seconds(30)) {
  return std::thread([&gate, limit] {
    std::unique_lock lk(gate.mu);
    gate.changed.wait_for(lk, limit, [&] { return gate.open; });
    lk.unlock();
    gate.release();
  });
}

// Lets time pass; only for tests that are about time (debounce, "nothing more happens").
inline awaitable<void> sleep_for(std::chrono::milliseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::as_tuple(use_awaitable));
}

} // namespace test

#endif
