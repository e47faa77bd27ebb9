// Hardening: every kind of bad new version of a running plugin leaves the old version
// serving with its state and gives a distinct error that names the plugin and the cause;
// state migration between state formats; files and directories that change under the
// watcher.
#include "support.hpp"

#include <random>

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

struct bad_version {
  std::string what;
  std::function<void(const sandbox&)> install; // puts the bad version in place
  hr::errc code;
  std::vector<std::string> says;   // the message names these (besides the plugin)
  boost::json::object config = {}; // options.plugin_config["counter"]
  bool rolls_back = false;         // failed after the old instance was torn down
  bool then_fixed = true;          // afterwards, counter_v1 reloads fine with the state
  std::function<void(hr::options&)> tweak = {};
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
  if (b.tweak) b.tweak(opts);
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

namespace {
using persistent_reloader =
    hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher, hr::dll_loader, hr::persistent_json_state>;

std::vector<fs::path> files_named(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> out;
  for (auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().starts_with(prefix)) out.push_back(e.path());
  return out;
}
} // namespace

TEST_CASE("persistent_json_state: state survives the process (a new reloader and policy)") {
  sandbox box;
  box.install("counter_v1");
  auto opts = box.opts();
  opts.state_dir = box.root / "state";
  {
    asio::io_context io;
    persistent_reloader r(io.get_executor(), opts);
    run(io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      for (int i = 0; i < 3; ++i) co_await call_increment(r);
      co_await r.async_stop(use_awaitable);
    });
  }
  struct stat st{};
  REQUIRE(::stat((opts.state_dir / "counter.json").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(::stat(opts.state_dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  asio::io_context io;
  persistent_reloader r(io.get_executor(), opts);
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    CHECK((co_await r.async_get("counter", use_awaitable))->count() == 3);
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("persistent_json_state: a corrupt snapshot file is moved aside and reported; the plugin starts empty") {
  for (std::string bad : {std::string("{\"enabled\": true, \"custom\": {\"count\""), std::string("[1, 2]"),
                          std::string("\xff\xfe garbage", 11)}) {
    sandbox box;
    box.install("counter_v1");
    auto opts = box.opts();
    opts.state_dir = box.root / "state";
    fs::create_directories(opts.state_dir);
    std::ofstream(opts.state_dir / "counter.json", std::ios::binary) << bad;
    std::vector<std::string> errors;
    opts.sink = [&](const hr::log_record& l) {
      if (l.level == hr::log_level::error) errors.emplace_back(l.message);
    };
    asio::io_context io;
    persistent_reloader r(io.get_executor(), opts);
    run(io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      CHECK((co_await r.async_get("counter", use_awaitable))->count() == 0);
      co_await r.async_stop(use_awaitable);
    });
    auto aside = files_named(opts.state_dir, "counter.json.corrupt-");
    REQUIRE(aside.size() == 1);
    CHECK(bytes_of(aside[0]) == bad); // kept as it was, for a person to look at
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("moved it aside to " + aside[0].string()) != std::string::npos);
    CHECK(errors[0].find("counter") != std::string::npos);
  }
}

TEST_CASE("persistent_json_state: killed at random moments 200 times, the file is always a whole snapshot") {
  sandbox box;
  hr::options opts;
  opts.state_dir = box.root / "state";
  opts.verbosity = hr::log_level::off;
  auto snapshot = [](std::int64_t seq) {
    return boost::json::object{{"seq", seq}, {"pad", std::string(20000, static_cast<char>('a' + seq % 26))}};
  };
  std::mt19937 rng(20261126);
  std::int64_t on_disk = -1;
  int kills_mid_sequence = 0;
  for (int round = 0; round < 200; ++round) {
    int ready[2];
    REQUIRE(::pipe(ready) == 0);
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) { // the child writes snapshots as fast as it can until it is killed
      ::close(ready[0]);
      hr::persistent_json_state state(opts);
      for (std::int64_t seq = on_disk + 1;; ++seq) {
        if (state.save("counter", snapshot(seq))) ::_exit(3);
        if (seq == on_disk + 1 && ::write(ready[1], "x", 1) != 1) ::_exit(4);
      }
    }
    ::close(ready[1]);
    char c;
    bool started = ::read(ready[0], &c, 1) == 1;
    ::close(ready[0]);
    // A random moment within the next few writes: the point of this test is the moment.
    ::usleep(static_cast<useconds_t>(rng() % 4000));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    REQUIRE(started);
    REQUIRE(WIFSIGNALED(status));
    auto text = bytes_of(opts.state_dir / "counter.json");
    boost::system::error_code ec;
    auto v = boost::json::parse(text, ec);
    REQUIRE_MESSAGE(!ec, "round " << round << ": not JSON after SIGKILL: " << text.substr(0, 80));
    auto seq = v.at("seq").as_int64();
    CHECK(seq > on_disk); // the child's first snapshot was on disk before it was killed
    CHECK(v.at("pad").as_string() == snapshot(seq).at("pad").as_string());
    if (seq > on_disk + 1) ++kills_mid_sequence;
    on_disk = seq;
  }
  CHECK(kills_mid_sequence > 0); // some kills landed after several writes
  // A fresh policy reads the last snapshot; killed writers' temporaries are gone.
  hr::persistent_json_state state(opts);
  auto last = state.load("counter");
  REQUIRE(last);
  CHECK(last->at("seq") == on_disk);
  CHECK(files_named(opts.state_dir, ".counter.json.tmp-").empty());
}

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
  auto& [box, io, r, rec] = h;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    std::size_t files = 0;
    for (auto& e : fs::recursive_directory_iterator(box.shadow)) {
      struct stat st{};
      REQUIRE(::stat(e.path().c_str(), &st) == 0);
      if (S_ISDIR(st.st_mode)) CHECK((st.st_mode & 0777) == 0700);
      if (S_ISREG(st.st_mode) && e.path().extension() == ".so") {
        CHECK((st.st_mode & 0777) == 0500);
        ++files;
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
