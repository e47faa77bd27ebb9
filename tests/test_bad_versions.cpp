// Hardening, bad plugins: every kind of bad new version of a running plugin (bad files, bad
// metadata, a name taken, hooks that throw or never finish) leaves the old version serving
// with its state and gives a distinct error that names the plugin and the cause; a plugin
// that fails at start leaves the others serving.
#include "hardening.hpp"

using namespace test;

TEST_CASE("bad files as a new version: refused, each with its own message") {
  auto bytes = [](std::string b) { return [b](const sandbox& s) { s.write(b); }; };
  std::mt19937 gen(7);
  std::string random(4096, '\0');
  for (auto& c : random) c = static_cast<char>(gen());
  auto v2 = bytes_of(sandbox::built("counter_v2"));
  const std::vector<bad_version> cases = {
      {"missing file", [](const sandbox& b) { fs::remove(b.plugins / "counter.so"); }, hr::errc::file_not_found,
       {"does not exist"}},
      {"empty file", bytes(""), hr::errc::load_failed, {"not a loadable library"}},
      {"random bytes", bytes(random), hr::errc::load_failed, {"not a loadable library"}},
      {"a truncated copy of a valid plugin", bytes(v2.substr(0, v2.size() * 2 / 3)), hr::errc::load_failed,
       {"it is truncated"}},
      {"a valid library that is not a plugin", [](const sandbox& b) { b.install("not_a_plugin"); },
       hr::errc::not_a_plugin, {"lacks the exports hotreload_abi_tag, hotreload_metadata, hotreload_create"}},
      {"a plugin for another interface", [](const sandbox& b) { b.install("other_iface"); }, hr::errc::abi_mismatch,
       {"other_iface"}},
      {"another plugin's library", [](const sandbox& b) { b.install("greeter_named"); }, hr::errc::name_mismatch,
       {"other"}},
  };
  for (auto& c : cases) check_refused(c);
}

TEST_CASE("bad metadata in a new version: refused, each with its own message") {
  auto meta = [](std::string json) { return [json](const sandbox& b) { b.write(with_metadata(json)); }; };
  const std::vector<bad_version> cases = {
      {"not JSON", meta(R"({"name": "counter", "version": )"), hr::errc::bad_metadata, {"not valid JSON"}},
      {"not an object", meta(R"(["counter"])"), hr::errc::bad_metadata, {"must be a JSON object"}},
      {"no name", meta(R"({"version": "1.0.0"})"), hr::errc::bad_metadata, {"needs \"name\""}},
      {"name not a string", meta(R"({"name": 5})"), hr::errc::bad_metadata, {"needs \"name\""}},
      {"name with a slash", meta(R"({"name": "../counter"})"), hr::errc::bad_metadata, {"may hold only"}},
      {"version not a string", meta(R"({"name": "counter", "version": 3})"), hr::errc::bad_metadata,
       {"\"version\" must be a string"}},
      {"depends_on not an array", meta(R"({"name": "counter", "depends_on": "db"})"), hr::errc::bad_metadata,
       {"\"depends_on\" must be an array"}},
      {"depends_on holding a number", meta(R"({"name": "counter", "depends_on": [1]})"), hr::errc::bad_metadata,
       {"\"depends_on\" must hold only non-empty strings"}},
      {"state_version not an integer", meta(R"({"name": "counter", "state_version": "2"})"),
       hr::errc::bad_metadata, {"\"state_version\" must be an integer"}},
      {"state_version 0", meta(R"({"name": "counter", "state_version": 0})"), hr::errc::bad_metadata,
       {"\"state_version\" must be an integer >= 1"}},
      {"1 MB of metadata",
       meta(R"({"name": "counter", "version": "1.0.0", "pad": ")" + std::string(1 << 20, 'x') + R"("})"),
       hr::errc::bad_metadata, {"longer than the 65536 bytes allowed"}},
      {"another plugin's name", meta(R"({"name": "someone_else"})"), hr::errc::name_mismatch, {"someone_else"}},
      {"no metadata export", [](const sandbox& b) { b.install("counter_no_metadata"); }, hr::errc::not_a_plugin,
       {"lacks the export hotreload_metadata"}},
      {"no factory export", [](const sandbox& b) { b.install("counter_no_create"); }, hr::errc::not_a_plugin,
       {"lacks the export hotreload_create"}},
      {"depends on itself", [](const sandbox& b) { b.install("counter_self_dep"); }, hr::errc::dependency_cycle,
       {"depends on itself"}},
      {"a static initialiser that throws", [](const sandbox& b) { b.install("counter_static_throws"); },
       hr::errc::load_failed, {"killed a probe process with SIGABRT", "static initialiser", "not affected"}},
      {"a static initialiser that calls exit(0)", [](const sandbox& b) { b.install("counter_static_exits"); },
       hr::errc::load_failed, {"ended a probe process with exit status 0", "calls exit", "not affected"}},
      {"a function that no library defines, called by a static initialiser",
       [](const sandbox& b) { b.install("counter_undefined_at_init"); }, hr::errc::load_failed,
       {"exit status 127", "symbol lookup error", "not affected"}},
      {"a function that no library defines, not called while loading",
       [](const sandbox& b) { b.install("counter_undefined_later"); }, hr::errc::load_failed,
       {"undefined symbol: hotreload_test_undefined_function"}},
      {"a static initialiser that never returns", [](const sandbox& b) { b.install("counter_static_hangs"); },
       hr::errc::load_failed, {"did not finish within 300 ms", "static initialiser hangs", "probe_timeout"}, {},
       false, true, [](hr::options& o) { o.probe_timeout = 300ms; }},
  };
  for (auto& c : cases) check_refused(c);

  // The control: the same patched file with valid metadata loads, so the refusals above
  // are the metadata's doing.
  sandbox box;
  box.install("counter_v1");
  asio::io_context io;
  reloader r(io.get_executor(), box.opts());
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    box.write(with_metadata(R"({"name": "counter", "version": "4.0.0"})"));
    co_await r.async_reload_plugin("counter", use_awaitable);
    CHECK(r.info("counter")->version == "4.0.0");
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("hooks of a new version that throw, throw a non-std type or never finish: rolled back") {
  auto v2 = [](const sandbox& b) { b.install("counter_v2"); };
  const std::vector<bad_version> cases = {
      {"constructor throws", v2, hr::errc::construct_failed, {"constructor threw", "ctor failure"},
       failing("ctor", "std"), true},
      {"constructor throws an int", v2, hr::errc::construct_failed, {"not derived from std::exception"},
       failing("ctor", "int"), true},
      {"set_reload_state throws", v2, hr::errc::state_restore_failed, {"set_reload_state threw"},
       failing("set_state", "std"), true},
      {"set_reload_state throws an int", v2, hr::errc::state_restore_failed, {"set_reload_state threw"},
       failing("set_state", "int"), true},
      {"set_reload_state never finishes", v2, hr::errc::hook_timeout, {"set_reload_state did not finish within 300 ms"},
       failing("set_state", "hang"), true},
      {"on_reload_async throws", v2, hr::errc::reload_hook_failed, {"on_reload_async threw"},
       failing("on_reload", "std"), true},
      {"on_reload_async throws an int", v2, hr::errc::reload_hook_failed, {"on_reload_async threw"},
       failing("on_reload", "int"), true},
      {"on_reload_async never finishes", v2, hr::errc::hook_timeout, {"on_reload_async did not finish"},
       failing("on_reload", "hang"), true},
      {"get_reload_state of the old version throws", v2, hr::errc::state_save_failed, {"get_reload_state threw"},
       failing("get_state", "std", "1.0.0"), false, false},
      {"get_reload_state of the old version throws an int", v2, hr::errc::state_save_failed,
       {"get_reload_state threw"}, failing("get_state", "int", "1.0.0"), false, false},
      {"get_reload_state of the old version never finishes", v2, hr::errc::hook_timeout,
       {"get_reload_state did not finish"}, failing("get_state", "hang", "1.0.0"), false, false},
  };
  for (auto& c : cases) check_refused(c);
}

TEST_CASE("a teardown that fails or never finishes is reported and does not block the reload") {
  for (const char* how : {"std", "int", "hang"}) {
    CAPTURE(how);
    harness h([&](hr::options& o) {
      o.timeouts.teardown = 300ms;
      o.verbosity = hr::log_level::off;
      o.plugin_config["counter"] = failing("teardown", how, "1.0.0");
    });
    [[maybe_unused]] auto& box = h.box;
    [[maybe_unused]] auto& io = h.io;
    [[maybe_unused]] auto& r = h.r;
    [[maybe_unused]] auto& rec = h.rec;
    run(io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      co_await call_increment(r);
      box.install("counter_v2");
      co_await r.async_reload_plugin("counter", use_awaitable);
      auto p = co_await r.async_get("counter", use_awaitable);
      CHECK(p->version() == "2.0.0");
      CHECK(p->count() == 1);
      p.reset();
      auto err = r.info("counter")->last_error;
      REQUIRE(err);
      CHECK(err->code == (std::string_view(how) == "hang" ? hr::errc::hook_timeout : hr::errc::teardown_failed));
      CHECK(err->message.find("teardown_async") != std::string::npos);
      co_await r.async_stop(use_awaitable);
    });
  }
}

TEST_CASE("a call past its limit is abandoned at that limit, even after a slower call with a longer limit in the "
          "same job") {
  // One job: the old instance's teardown (300 ms, within its 10 s), then the new instance's
  // calls, of which on_reload_async never finishes (1 s limit).
  harness h([&](hr::options& o) {
    o.max_caller_wait = 20s;
    o.timeouts.teardown = 10s;
    o.timeouts.on_reload = 1s;
    o.verbosity = hr::log_level::off;
    auto config = failing("on_reload", "hang");
    config["delay_ms"] = 300;
    o.plugin_config["counter"] = config;
  });
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    co_await call_increment(r);
    box.install("counter_v2");
    auto t0 = std::chrono::steady_clock::now();
    auto [ec] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    auto took = std::chrono::steady_clock::now() - t0;
    CHECK(ec == hr::errc::hook_timeout);
    auto err = r.info("counter")->last_error;
    REQUIRE(err);
    CHECK_MESSAGE(err->message.find("on_reload_async did not finish within 1000 ms") != std::string::npos, err->message);
    // About 2 s (the teardown, on_reload_async's limit, the rollback's on_reload_async); the
    // teardown's limit would be 10 s.
    CHECK(took < 6s);
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "1.0.0");
    CHECK(p->count() == 1);
    p.reset();
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("a second library claiming a loaded plugin's name is refused; the first serves on") {
  harness h([](hr::options& o) { o.verbosity = hr::log_level::off; });
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    co_await call_increment(r);
    box.install("counter_v2", "impostor.so");
    auto [ec, name] = co_await r.async_load_plugin(box.plugins / "impostor.so", asio::as_tuple(use_awaitable));
    CHECK(ec == hr::errc::duplicate_plugin);
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "1.0.0");
    CHECK(p->count() == 1);
    p.reset();
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("setup_async that throws, throws a non-std type or never finishes: that plugin is unavailable, "
          "the others serve, and a fixed version starts") {
  for (const char* how : {"std", "int", "hang"}) {
    CAPTURE(how);
    sandbox box;
    box.install("counter_v1");
    box.install("greeter_named", "other.so"); // another plugin, which must serve regardless
    asio::io_context io;
    auto opts = box.opts();
    opts.verbosity = hr::log_level::off;
    opts.timeouts.setup = 300ms;
    opts.plugin_config["counter"] = failing("setup", how, "1.0.0");
    reloader r(io.get_executor(), opts);
    run(io, [&]() -> awaitable<void> {
      auto [ec] = co_await r.async_start(asio::as_tuple(use_awaitable));
      auto expected = std::string_view(how) == "hang" ? hr::errc::hook_timeout : hr::errc::setup_failed;
      CHECK(ec == expected);
      auto err = r.info("counter")->last_error;
      REQUIRE(err);
      CHECK(err->code == expected);
      CHECK(err->message.find("setup_async") != std::string::npos);
      CHECK(r.try_get("other"));
      auto [ec2, p] = co_await r.async_get("counter", asio::as_tuple(use_awaitable));
      CHECK(ec2 == hr::errc::plugin_unavailable);
      box.install("counter_v2");
      co_await r.async_reload_plugin("counter", use_awaitable);
      CHECK((co_await r.async_get("counter", use_awaitable))->version() == "2.0.0");
      co_await r.async_stop(use_awaitable);
    });
  }
}

TEST_CASE("a library whose file name holds a newline cannot forge a log line") {
  sandbox box;
  box.install("counter_v1");
  box.write("not a library", "evil\n[ERROR] forged.so");
  asio::io_context io;
  auto opts = box.opts();
  std::vector<std::string> lines;
  opts.sink = [&](const hr::log_record& l) { lines.emplace_back(l.message); };
  reloader r(io.get_executor(), opts);
  run(io, [&]() -> awaitable<void> {
    auto [ec] = co_await r.async_start(asio::as_tuple(use_awaitable));
    CHECK(ec == hr::errc::load_failed);
    CHECK(co_await call_increment(r) == 1); // the good plugin serves
    co_await r.async_stop(use_awaitable);
  });
  bool named = false;
  for (auto& l : lines) {
    CHECK_MESSAGE(l.find('\n') == std::string::npos, l);
    named = named || l.find("evil\\n[ERROR] forged.so") != std::string::npos;
  }
  CHECK(named);
}

TEST_CASE("ABI: a plugin built against another interface_version is refused at -O0 and -O2 by a host "
          "that exports its symbols; the same plugin for this interface is accepted at both") {
  // tests/meson.build runs the same cases from a host without export-dynamic (abi_host).
  const std::pair<const char*, bool> cases[] = {
      {"counter_iface2_O0", false}, {"counter_iface2_O2", false}, {"counter_v1", true}, {"counter_v1_O2", true}};
  for (auto& c : cases) {
    std::string variant = c.first;
    bool accepted = c.second;
    CAPTURE(variant);
    sandbox box;
    box.install(variant);
    asio::io_context io;
    auto opts = box.opts();
    opts.verbosity = hr::log_level::off;
    reloader r(io.get_executor(), opts);
    run(io, [&]() -> awaitable<void> {
      auto [ec] = co_await r.async_start(asio::as_tuple(use_awaitable));
      if (accepted) {
        CHECK(!ec);
        CHECK(co_await call_increment(r) == 1);
      } else {
        CHECK(ec == hr::errc::abi_mismatch);
        CHECK(!r.try_get("counter"));
        auto info = r.plugins();
        CHECK(info.empty());
      }
      co_await r.async_stop(use_awaitable);
    });
  }
}


namespace {

// Callers that never pause while plugin code blocks its thread: async_get from the
// io_context's only thread (the one the reloader's strand runs on), try_get from another
// thread. What they saw: the longest wait of each kind, and every increment they made.
struct busy_callers {
  std::atomic<bool> done{false};
  std::atomic<int> increments{0}, running{0};
  std::atomic<std::int64_t> longest_get_us{0}, longest_try_get_us{0};
  std::thread trier;

  static void note(std::atomic<std::int64_t>& longest, std::chrono::steady_clock::duration d) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    for (auto cur = longest.load(); us > cur && !longest.compare_exchange_weak(cur, us);) {
    }
  }
  awaitable<void> caller(reloader& r) {
    for (; !done; co_await asio::post(co_await asio::this_coro::executor, use_awaitable)) {
      auto t0 = std::chrono::steady_clock::now();
      auto [ec, p] = co_await r.async_get("counter", asio::as_tuple(use_awaitable));
      note(longest_get_us, std::chrono::steady_clock::now() - t0);
      if (p) {
        p->increment();
        ++increments;
      }
    }
    --running;
  }
  void start(reloader& r, asio::io_context& io) {
    for (int i = 0; i < 2; ++i, ++running) asio::co_spawn(io, caller(r), asio::detached);
    trier = std::thread([this, &r] {
      while (!done) {
        auto t0 = std::chrono::steady_clock::now();
        if (auto p = r.try_get("counter")) {
          p->increment();
          ++increments;
        }
        note(longest_try_get_us, std::chrono::steady_clock::now() - t0);
        std::this_thread::yield();
      }
    });
  }
  awaitable<void> stop() {
    done = true;
    trier.join();
    while (running > 0) co_await asio::post(co_await asio::this_coro::executor, use_awaitable);
  }
};

} // namespace

TEST_CASE("plugin code that blocks its thread (constructor, each hook, teardown): no caller waits longer than "
          "max_caller_wait, the old version serves with its state, stop stays bounded") {
  CHECK(hr::options{}.max_caller_wait <= 2s);
  struct blocking {
    std::string hook;
    const char* version;     // the version whose hook blocks
    std::string says;        // in the error
    std::string serving;     // afterwards ("": no reload, only a stop)
    std::chrono::milliseconds bound;
  };
  const std::vector<blocking> cases = {
      {"ctor", "2.0.0", "constructor", "1.0.0", 500ms},
      {"set_state", "2.0.0", "set_reload_state", "1.0.0", 500ms},
      {"on_reload", "2.0.0", "on_reload_async", "1.0.0", hr::options{}.max_caller_wait}, // the default
      {"get_state", "1.0.0", "get_reload_state", "1.0.0", 500ms},
      {"teardown", "1.0.0", "teardown_async", "2.0.0", 500ms}, // reported; the new version serves
      {"teardown", "1.0.0", "teardown_async", "", 500ms},      // at stop
  };
  for (auto& c : cases) {
    CAPTURE(c.hook);
    CAPTURE(c.serving);
    harness h([&](hr::options& o) {
      o.max_caller_wait = c.bound;
      o.verbosity = hr::log_level::off;
      o.plugin_config["counter"] = failing(c.hook.c_str(), "block", c.version);
    });
    [[maybe_unused]] auto& box = h.box;
    [[maybe_unused]] auto& io = h.io;
    [[maybe_unused]] auto& r = h.r;
    [[maybe_unused]] auto& rec = h.rec;
    auto& gate = *box.journal;
    // Should the library fail to bound the waits, the test fails instead of hanging.
    auto valve = open_at_the_latest(gate);
    busy_callers callers;
    const auto margin = 1000ms; // scheduling, sanitizers
    run(io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      for (int i = 0; i < 3; ++i) co_await call_increment(r);
      callers.start(r, io);
      if (!c.serving.empty()) {
        box.install("counter_v2");
        auto [ec] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
        auto info = r.info("counter");
        REQUIRE(info);
        CHECK(info->version == c.serving);
        CHECK(info->abandoned_calls == 1);
        REQUIRE(info->last_error);
        CHECK(info->last_error->code == hr::errc::hook_timeout);
        CHECK_MESSAGE(info->last_error->message.find(c.says) != std::string::npos, info->last_error->message);
        CHECK(info->last_error->message.find("abandoned") != std::string::npos);
        if (c.serving == "2.0.0") CHECK(!ec); // a teardown's failure is only reported
        else CHECK(ec == hr::errc::hook_timeout);
        co_await callers.stop();
        auto p = co_await r.async_get("counter", use_awaitable);
        CHECK(p->count() == 3 + callers.increments); // nothing lost, nothing counted twice
        p.reset();
      }
      auto t0 = std::chrono::steady_clock::now();
      co_await r.async_stop(use_awaitable);
      CHECK(std::chrono::steady_clock::now() - t0 < c.bound + margin);
      if (c.serving.empty()) co_await callers.stop();
      CHECK(rec.count(hr::event_kind::abandoned) >= 1);
      // The blocked code returns once let go, and is reported.
      gate.release();
      auto back = co_await rec.next(hr::event_kind::returned);
      CHECK(back.plugin == "counter");
    });
    valve.join();
    CHECK(std::chrono::microseconds(callers.longest_get_us.load()) < c.bound + margin);
    CHECK(std::chrono::microseconds(callers.longest_try_get_us.load()) < c.bound);
    MESSAGE(c.hook << std::string(c.serving.empty() ? " (stop)" : " (reload)") << ": longest async_get " << callers.longest_get_us / 1000
                   << " ms, longest try_get " << callers.longest_try_get_us / 1000 << " ms, bound "
                   << c.bound.count() << " ms");
  }
}
