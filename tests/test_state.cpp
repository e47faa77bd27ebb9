// Hardening, state: migration between state formats (at reload and at start, refused and
// failing migrations), and persistent_json_state across processes, corrupt files and kills.
#include "hardening.hpp"

using namespace test;

TEST_CASE("state migration: v1's {count} becomes v2's {total, history} through migrate_state") {
  harness h;
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
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
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
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

namespace {
// A State policy that stages its snapshots and commits them later, as persistent_json_state
// does, where the test decides: a commit that blocks at the journal's gate, or fails; a
// snapshot refused when staged.
struct staging_state {
  static constexpr bool preserves_state = true;
  std::shared_ptr<test::journal> gate; // commits block here while set
  bool refuse = false, fail = false;
  hr::json_state memory;
  std::vector<std::int64_t> committed; // the "count" of each snapshot committed
  hr::snapshot_ptr staged;
  hr::error_info save(std::string_view name, const boost::json::object& s) { return memory.save(name, s); }
  hr::error_info stage(std::string_view name, hr::snapshot_ptr s) {
    if (refuse) return hr::detail::fail(hr::errc::state_store_failed, {}, "refused: the test said so");
    staged = s;
    return memory.save(name, std::move(s));
  }
  hr::error_info commit(std::string_view) {
    if (gate) gate->block();
    if (fail) return hr::detail::fail(hr::errc::state_store_failed, {}, "cannot write: the test said so");
    committed.push_back(staged->at("custom").at("count").to_number<std::int64_t>());
    return {};
  }
  std::optional<boost::json::object> load(std::string_view name) { return memory.load(name); }
};
static_assert(hr::state_store_staging<staging_state>);
} // namespace

TEST_CASE("a State policy's slow save comes after the reload (persistent_json_state's synced file): callers never "
          "wait for it, a failed one is reported and the reload stands; a snapshot refused in the window still fails "
          "the reload") {
  sandbox box;
  box.install("counter_v1");
  asio::io_context io;
  hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher, hr::dll_loader, staging_state> r(io.get_executor(),
                                                                                                  box.opts());
  auto& policy = r.state();
  auto& gate = *box.journal;
  // While the commit blocks the reloader's only thread, another thread looks at what callers get.
  std::string seen_version;
  int seen_count = -1;
  std::thread observer([&] {
    {
      std::unique_lock lk(gate.mu);
      if (!gate.changed.wait_for(lk, 30s, [&] { return gate.blocked > 0 || gate.open; })) return;
    }
    if (auto p = r.try_get("counter")) {
      seen_version = p->version();
      seen_count = p->count();
    }
    gate.release();
  });
  auto valve = open_at_the_latest(gate);
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    for (int i = 0; i < 3; ++i) co_await call_increment(r);
    policy.gate = box.journal;
    box.install("counter_v2");
    auto [ec] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    CHECK(!ec);
    CHECK(seen_version == "2.0.0"); // published before the commit, which was still blocked
    CHECK(seen_count == 3);
    CHECK(policy.committed == std::vector<std::int64_t>{3});
    policy.gate = nullptr;

    // A commit that fails: reported and recorded, and the new version serves with the state.
    policy.fail = true;
    co_await call_increment(r);
    box.install("counter_v1");
    std::tie(ec) = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    CHECK(!ec);
    auto info = r.info("counter");
    CHECK(info->version == "1.0.0");
    REQUIRE(info->last_error);
    CHECK(info->last_error->code == hr::errc::state_store_failed);
    CHECK(info->last_error->message.find("State of plugin counter not stored") != std::string::npos);
    CHECK(info->last_error->message.find("cannot write: the test said so") != std::string::npos);
    CHECK((co_await call_increment(r)) == 5);
    policy.fail = false;

    // A snapshot refused when staged fails the reload before the old version is touched.
    policy.refuse = true;
    box.install("counter_v2");
    std::tie(ec) = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    CHECK(ec == hr::errc::state_store_failed);
    CHECK(r.info("counter")->version == "1.0.0");
    CHECK((co_await call_increment(r)) == 6);
    CHECK(policy.committed == std::vector<std::int64_t>{3});
    policy.refuse = false;
    co_await r.async_stop(use_awaitable);
  });
  observer.join();
  valve.join();
}

namespace {
// The same, saying it accepts every snapshot: a reload of one plugin takes its snapshot in the
// teardown's job and saves it after.
struct accepting_state : staging_state {
  static constexpr bool accepts_every_snapshot = true;
};
static_assert(hr::state_store_accepting<accepting_state> && !hr::state_store_accepting<staging_state>);
} // namespace

TEST_CASE("a State policy that accepts every snapshot and refuses one all the same: the reload stands with the state, "
          "the refusal is reported and recorded") {
  sandbox box;
  box.install("counter_v1");
  asio::io_context io;
  hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher, hr::dll_loader, accepting_state> r(io.get_executor(),
                                                                                                    box.opts());
  auto& policy = r.state();
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    for (int i = 0; i < 3; ++i) co_await call_increment(r);
    policy.refuse = true;
    box.install("counter_v2");
    box.journal->take();
    auto [ec] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    CHECK(!ec);
    CHECK(box.journal->take() == std::vector<std::string>{"1.0.0:get_state", "1.0.0:teardown", "2.0.0:ctor",
                                                          "2.0.0:set_state", "2.0.0:on_reload", "1.0.0:dtor"});
    auto info = r.info("counter");
    CHECK(info->version == "2.0.0");
    REQUIRE(info->last_error);
    CHECK(info->last_error->code == hr::errc::state_store_failed);
    CHECK(info->last_error->message.find("State of plugin counter not stored") != std::string::npos);
    CHECK(info->last_error->message.find("refused: the test said so") != std::string::npos);
    CHECK((co_await call_increment(r)) == 4); // the new version has the old one's state
    CHECK(policy.committed.empty());

    // Accepted: saved, then committed once callers no longer wait.
    policy.refuse = false;
    box.install("counter_v1");
    std::tie(ec) = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    CHECK(!ec);
    CHECK((co_await call_increment(r)) == 5);
    CHECK(policy.committed == std::vector<std::int64_t>{4});
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("persistent_json_state: state survives the process (a new reloader and policy); each reload's snapshot is "
          "written once the new version serves, and a state_dir it cannot write to is reported, the reloads standing") {
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
  auto on_disk = [&]() -> boost::json::value {
    std::ifstream in(opts.state_dir / "counter.json");
    std::string text(std::istreambuf_iterator<char>(in), {});
    boost::system::error_code ec;
    return boost::json::parse(text, ec);
  };
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    CHECK((co_await r.async_get("counter", use_awaitable))->count() == 3);
    co_await call_increment(r);
    box.install("counter_v2");
    co_await r.async_reload_plugin("counter", use_awaitable);
    auto written = on_disk();
    REQUIRE(written.is_object());
    CHECK(written.at("custom").at("count") == 4);
    CHECK(!r.info("counter")->last_error);
    // The state directory replaced by a file: nothing can be written there.
    fs::remove_all(opts.state_dir);
    std::ofstream(opts.state_dir) << "not a directory";
    co_await call_increment(r);
    box.install("counter_v1");
    auto [ec] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    CHECK(!ec);
    auto info = r.info("counter");
    CHECK(info->version == "1.0.0");
    REQUIRE(info->last_error);
    CHECK(info->last_error->code == hr::errc::state_store_failed);
    CHECK_MESSAGE(info->last_error->message.find("check options.state_dir") != std::string::npos,
                  info->last_error->message);
    CHECK((co_await call_increment(r)) == 6);
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

// A State policy that keeps the reload's own snapshot, as json_state does, and says what it
// was given.
struct sharing_state {
  static constexpr bool preserves_state = true;
  std::vector<hr::snapshot_ptr> given;
  std::vector<long> holders; // use_count when given: the reload holds it too
  hr::error_info save(std::string_view, const boost::json::object&) {
    return hr::detail::fail(hr::errc::state_save_failed, {}, "copied: the shared snapshot was not used");
  }
  hr::error_info save(std::string_view, hr::snapshot_ptr snapshot) {
    holders.push_back(snapshot.use_count());
    given.push_back(std::move(snapshot));
    return {};
  }
  std::optional<boost::json::object> load(std::string_view) const {
    if (given.empty()) return std::nullopt;
    return *given.back();
  }
};
static_assert(hr::state_store_sharing<sharing_state>);

TEST_CASE("a large state is handed over, never copied: the State policy, the new version (adopt_reload_state) and a "
          "rollback share one snapshot") {
  sandbox box;
  box.install("counter_v1");
  auto opts = box.opts();
  auto config = failing("on_reload", "std", "2.0.0"); // for a rollback, below
  config["state_bytes"] = 1 << 20;
  config["journal_state"] = true; // the plugin notes where the state it adopts is
  // Where each version found its state: "<version>:state at <address>" lines.
  auto adopted_at = [&] {
    std::vector<std::string> out;
    for (auto& line : box.journal->take())
      if (auto at = line.find(":state at "); at != std::string::npos) out.push_back(line);
    return out;
  };
  auto address = [](const boost::json::value& v) { return std::to_string(reinterpret_cast<std::uintptr_t>(&v)); };
  opts.plugin_config = boost::json::object{{"counter", config}};
  asio::io_context io;
  hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher, hr::dll_loader, sharing_state> r(io.get_executor(), opts);
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    for (int i = 0; i < 3; ++i) co_await call_increment(r);
    adopted_at();
    box.install("counter_v1"); // a rebuild of the same version
    co_await r.async_reload_plugin("counter", use_awaitable);
    REQUIRE(r.state().given.size() == 1);
    CHECK(r.state().holders[0] >= 2);
    auto& first = *r.state().given[0];
    CHECK(first.at("custom").at("count") == 3);
    CHECK(first.at("custom").at("blob").as_string().size() == 1u << 20);
    CHECK((co_await r.async_get("counter", use_awaitable))->count() == 3);
    CHECK(adopted_at() == std::vector<std::string>{"1.0.0:state at " + address(first.at("custom"))});

    // A reload that fails after adopt_reload_state: the old version serves again with the
    // state, from the same shared snapshot (which the failed version shared, immutable).
    co_await call_increment(r);
    box.install("counter_v2");
    auto [ec] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    CHECK(ec == hr::errc::reload_hook_failed);
    CHECK(r.info("counter")->version == "1.0.0");
    CHECK((co_await r.async_get("counter", use_awaitable))->count() == 4);
    REQUIRE(r.state().given.size() == 2);
    auto& second = *r.state().given[1];
    CHECK(second.at("custom").at("count") == 4);
    auto where = address(second.at("custom"));
    CHECK(adopted_at() == std::vector<std::string>{"2.0.0:state at " + where, "1.0.0:state at " + where});
    co_await r.async_stop(use_awaitable);
  });
}
