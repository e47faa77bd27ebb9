// Hardening: every kind of bad new version of a running plugin leaves the old version
// serving with its state and gives a distinct error that names the plugin and the cause;
// state migration between state formats; files and directories that change under the
// watcher.
#include "support.hpp"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

using namespace test;

namespace {

std::string bytes_of(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// counter_meta_slot (a valid plugin) with its metadata text replaced by `json`.
std::string with_metadata(const std::string& json) {
  auto b = bytes_of(sandbox::built("counter_meta_slot"));
  const std::string slot = R"({"name": "counter", "version": "1.0.0", "slot": "METADATA-SLOT"})";
  auto at = b.find(slot);
  REQUIRE(at != std::string::npos);
  REQUIRE(json.size() < 1200 * 1024);
  b.replace(at, json.size() + 1, json + '\0'); // same size: the rest of the slot stays
  return b;
}

// counter_v2 with every occurrence of `symbol` renamed (same length), so it is not exported.
std::string without_symbol(std::string symbol) {
  auto b = bytes_of(sandbox::built("counter_v2"));
  auto renamed = symbol;
  renamed.back() = 'X';
  std::size_t n = 0;
  for (auto at = b.find(symbol); at != std::string::npos; at = b.find(symbol, at + 1), ++n)
    b.replace(at, symbol.size(), renamed);
  REQUIRE(n > 0);
  return b;
}

struct bad_version {
  std::string what;
  std::function<void(const sandbox&)> install; // puts the bad version in place
  hr::errc code;
  std::vector<std::string> says;   // the message names these (besides the plugin)
  boost::json::object config = {}; // options.plugin_config["counter"]
  bool rolls_back = false;         // failed after the old instance was torn down
  bool then_fixed = true;          // afterwards, counter_v1 reloads fine with the state
};

// v1 serves with a count of 2; `b` is reloaded and must fail as described; v1 serves on.
void check_refused(const bad_version& b) {
  CAPTURE(b.what);
  sandbox box;
  box.install("counter_v1");
  asio::io_context io;
  auto opts = box.opts();
  opts.timeouts = {300ms, 300ms, 300ms, 300ms, 300ms};
  opts.verbosity = hr::log_level::off;
  if (!b.config.empty()) opts.plugin_config["counter"] = b.config;
  reloader r(io.get_executor(), opts);
  recorder rec;
  rec.attach(r);
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    co_await call_increment(r);
    co_await call_increment(r);
    b.install(box);
    auto [ec] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    CHECK(ec == b.code);
    auto info = r.info("counter");
    REQUIRE(info);
    REQUIRE(info->last_error);
    const auto& err = *info->last_error;
    CHECK(err.code == b.code);
    CHECK(err.plugin == "counter");
    CHECK_MESSAGE(err.message.find("counter") != std::string::npos, err.message);
    for (auto& s : b.says) CHECK_MESSAGE(err.message.find(s) != std::string::npos, "wanted '" << s << "' in: " << err.message);
    auto failed = co_await rec.next(hr::event_kind::reload_failed);
    CHECK(failed.error.code == b.code);
    if (b.rolls_back) co_await rec.next(hr::event_kind::rolled_back);
    CHECK(rec.count(hr::event_kind::rolled_back) == (b.rolls_back ? 1u : 0u));
    // The old version serves with its state.
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "1.0.0");
    CHECK(p->count() == 2);
    CHECK(p->increment() == 3);
    p.reset();
    if (b.then_fixed) {
      box.install("counter_v1");
      co_await r.async_reload_plugin("counter", use_awaitable);
      CHECK((co_await r.async_get("counter", use_awaitable))->count() == 3);
    }
    co_await r.async_stop(use_awaitable);
  });
}

boost::json::object failing(const char* hook, const char* how, const char* version = "2.0.0") {
  return {{"fail_hook", hook}, {"fail_how", how}, {"fail_version", version}};
}

} // namespace

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
      {"no metadata export", [](const sandbox& b) { b.write(without_symbol("hotreload_metadata")); },
       hr::errc::not_a_plugin, {"lacks the export hotreload_metadata"}},
      {"no factory export", [](const sandbox& b) { b.write(without_symbol("hotreload_create")); },
       hr::errc::not_a_plugin, {"lacks the export hotreload_create"}},
      {"depends on itself", [](const sandbox& b) { b.install("counter_self_dep"); }, hr::errc::dependency_cycle,
       {"depends on itself"}},
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
    auto& [box, io, r, rec] = h;
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

TEST_CASE("state migration: v1's {count} becomes v2's {total, history} through migrate_state") {
  harness h;
  auto& [box, io, r, rec] = h;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    for (int i = 0; i < 3; ++i) co_await call_increment(r);
    box.install("counter_state2");
    co_await r.async_reload_plugin("counter", use_awaitable);
    CHECK(box.journal->count("2.0.0:migrate_state") == 1);
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->count() == 3);
    CHECK(r.info("counter")->state_version == 2);
    p.reset();
    // Same format from here on: no migration.
    co_await r.async_reload_plugin("counter", use_awaitable);
    CHECK(box.journal->count("2.0.0:migrate_state") == 1);
    co_await r.async_stop(use_awaitable);
    auto snapshot = r.state().load("counter");
    REQUIRE(snapshot);
    CHECK(snapshot->at("state_version") == 2);
    CHECK(snapshot->at("custom").at("total") == 3);
    CHECK(snapshot->at("custom").at("history").as_array().size() == 2); // one entry per hand-over
  });
}

TEST_CASE("state migration at start: a snapshot of state_version 1 is migrated for a v2 that starts") {
  harness h;
  auto& [box, io, r, rec] = h;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    co_await call_increment(r);
    co_await call_increment(r);
    co_await r.async_stop(use_awaitable);
    box.install("counter_state2");
    co_await r.async_start(use_awaitable);
    CHECK((co_await r.async_get("counter", use_awaitable))->count() == 2);
    CHECK(box.journal->count("2.0.0:migrate_state") == 1);
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("a state from a newer state_version than the plugin knows is refused: rolled back") {
  sandbox box;
  box.install("counter_state2");
  asio::io_context io;
  auto opts = box.opts();
  opts.verbosity = hr::log_level::off;
  reloader r(io.get_executor(), opts);
  recorder rec;
  rec.attach(r);
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    co_await call_increment(r);
    co_await call_increment(r);
    box.install("counter_v1"); // a downgrade: v1 knows only state_version 1
    auto [ec] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    CHECK(ec == hr::errc::state_migration_failed);
    auto err = *r.info("counter")->last_error;
    CHECK_MESSAGE(err.message.find("state_version 2") != std::string::npos, err.message);
    CHECK_MESSAGE(err.message.find("implement migrate_state") != std::string::npos, err.message);
    co_await rec.next(hr::event_kind::rolled_back);
    CHECK(box.journal->count("1.0.0:set_state") == 0); // v1 never saw the state it cannot read
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "2.0.0");
    CHECK(p->count() == 2);
    p.reset();
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("a migration that fails or never finishes rolls back") {
  auto state2 = [](const sandbox& b) { b.install("counter_state2"); };
  check_refused({"migrate_state throws", state2, hr::errc::state_migration_failed, {"migrate_state threw"},
                 failing("migrate_state", "std"), true});
  check_refused({"migrate_state throws an int", state2, hr::errc::state_migration_failed, {"migrate_state threw"},
                 failing("migrate_state", "int"), true});
  check_refused({"migrate_state never finishes", state2, hr::errc::hook_timeout, {"migrate_state did not finish"},
                 failing("migrate_state", "hang"), true});
}

TEST_CASE("a second library claiming a loaded plugin's name is refused; the first serves on") {
  harness h([](hr::options& o) { o.verbosity = hr::log_level::off; });
  auto& [box, io, r, rec] = h;
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
