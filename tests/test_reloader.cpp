// Behaviour of the core engine with real shared libraries swapped on disk.
#include <hotreload.hpp>

#include <doctest/doctest.h>

#include "support.hpp"

#include <random>

using namespace test;


TEST_CASE("load, call, reload to v2: new code, state carried, hooks in order") {
  harness h;
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    CHECK(box.journal->take() == std::vector<std::string>{"1.0.0:ctor", "1.0.0:setup"});
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "1.0.0");
    CHECK(p.metadata().name == "counter");
    p->increment();
    p->increment();
    CHECK(p->increment() == 3);
    p.reset();

    box.install("counter_v2");
    co_await r.async_reload_plugin("counter", use_awaitable);
    CHECK(box.journal->take() == std::vector<std::string>{"1.0.0:get_state", "1.0.0:teardown", "2.0.0:ctor",
                                                          "2.0.0:set_state", "2.0.0:on_reload", "1.0.0:dtor"});
    p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "2.0.0");
    CHECK(p.metadata().version == "2.0.0");
    CHECK(p->count() == 3);
    CHECK(p->increment() == 4);
    auto info = r.info("counter");
    REQUIRE(info);
    CHECK(info->version == "2.0.0");
    CHECK(info->reloads == 1);
    CHECK(info->serving);
    p.reset();

    co_await r.async_stop(use_awaitable);
    CHECK(box.journal->take() == std::vector<std::string>{"2.0.0:get_state", "2.0.0:teardown", "2.0.0:dtor"});
    CHECK(!r.try_get("counter"));
  });
}

TEST_CASE("every reload step is reported, in transaction order") {
  harness h;
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    box.install("counter_v2");
    co_await r.async_reload_plugin("counter", use_awaitable);
    auto done = co_await rec.next(hr::event_kind::reloaded);
    CHECK(done.old_version == "1.0.0");
    CHECK(done.new_version == "2.0.0");
    CHECK(done.duration > 0ns);
    co_await r.async_stop(use_awaitable);
  });
  std::vector<hr::reload_step> steps;
  for (auto& e : rec.events)
    if (e.kind == hr::event_kind::reload_step) steps.push_back(e.step);
  using s = hr::reload_step;
  CHECK(steps == std::vector<s>{s::library_loaded, s::quiesced, s::state_saved, s::torn_down, s::constructed,
                                s::state_restored, s::reload_hook, s::published});
}

TEST_CASE("the throwing form raises hot_reload_error and state_preservation_error") {
  harness h([](hr::options& o) {
    o.verbosity = hr::log_level::off;
    o.plugin_config["counter"] = boost::json::object{{"fail_hook", "set_state"}, {"fail_version", "2.0.0"}};
  });
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    try {
      co_await r.async_get("nope", use_awaitable);
      FAIL("no exception");
    } catch (const hr::hot_reload_error& e) {
      CHECK(e.code() == hr::errc::plugin_not_found);
      CHECK(e.plugin() == "nope");
      CHECK(std::string(e.what()).find("nope") != std::string::npos);
    }
    box.install("counter_v2"); // whose set_reload_state throws (plugin_config)
    try {
      co_await r.async_reload_plugin("counter", use_awaitable);
      FAIL("no exception");
    } catch (const hr::state_preservation_error& e) {
      CHECK(e.code() == hr::errc::state_restore_failed);
      CHECK(e.plugin() == "counter");
      CHECK(std::string(e.what()).find("set_reload_state") != std::string::npos);
    }
    // Callback form: an error_code.
    hr::error_code got;
    std::atomic<bool> called{false};
    r.async_reload_plugin("missing", [&](hr::error_code ec) {
      got = ec;
      called = true;
    });
    while (!called) co_await asio::post(co_await asio::this_coro::executor, use_awaitable);
    CHECK(got == hr::errc::plugin_not_found);
    CHECK(got.category().name() == std::string("hotreload"));
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("a held plugin_ptr delays the snapshot, and its changes are in the state") {
  harness h;
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    auto held = co_await r.async_get("counter", use_awaitable);
    box.install("counter_v2");
    std::atomic<bool> reloaded{false};
    asio::co_spawn(io, r.async_reload_plugin("counter", use_awaitable), [&](std::exception_ptr) { reloaded = true; });
    // The new library is loaded, then the reload quiesces (on a hook thread, in the job that
    // goes on to the snapshot) and waits for `held`: nobody gets the old version any more.
    co_await rec.next([](auto& e) { return e.step == hr::reload_step::library_loaded; });
    REQUIRE(co_await comes_true([&] { return !r.try_get("counter"); }));
    // A caller arriving now waits for the reload and gets the new version.
    std::optional<std::string> late;
    asio::co_spawn(io, [&]() -> awaitable<void> {
      auto p = co_await r.async_get("counter", use_awaitable);
      late = p->version();
    }, asio::detached);
    held->increment();
    held->increment();
    CHECK(!reloaded);
    held.reset();
    co_await rec.next(hr::event_kind::reloaded);
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "2.0.0");
    CHECK(p->count() == 2);
    p.reset();
    while (!late) co_await asio::post(io, use_awaitable);
    CHECK(*late == "2.0.0");
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("a reload's job publishes the new version itself: callers get it while the program's io_context is "
          "busy, with its state, and async_get callers once it is free") {
  harness h;
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  // The acceptance check runs in the job, just before the publication: it keeps the program's
  // only thread busy in a handler that waits until try_get hands out the new version.
  std::atomic<bool> seen_while_busy{false};
  std::atomic<int> count_seen{0};
  r.set_acceptance_check([&](hr::candidate<test::counter_iface> c) -> awaitable<hr::verdict> {
    if (c.new_version.version == "2.0.0")
      asio::post(io, [&] {
        seen_while_busy = becomes_true([&] {
          auto p = r.try_get("counter");
          if (!p || p->version() != "2.0.0") return false;
          count_seen = p->count();
          return true;
        });
      });
    co_return hr::verdict::accept();
  });
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    CHECK(co_await call_increment(r) == 1);
    CHECK(co_await call_increment(r) == 2);
    box.install("counter_v2");
    co_await r.async_reload_plugin("counter", use_awaitable);
    CHECK(seen_while_busy);
    CHECK(count_seen == 2);
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "2.0.0");
    p.reset();
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("a plugin_ptr held past quiesce_timeout fails the reload, and the old version serves on") {
  harness h([](hr::options& o) {
    o.quiesce_timeout = 100ms;
    o.verbosity = hr::log_level::off;
  });
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    auto held = co_await r.async_get("counter", use_awaitable);
    box.install("counter_v2");
    auto [ec] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    CHECK(ec == hr::errc::quiesce_timeout);
    CHECK(held->increment() == 1);
    auto p = r.try_get("counter");
    REQUIRE(p);
    CHECK(p->version() == "1.0.0");
    CHECK(p == held);
    p.reset();
    held.reset();
    co_await r.async_reload_plugin("counter", use_awaitable);
    p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "2.0.0");
    CHECK(p->count() == 1);
    p.reset();
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("a reloader destroyed while a reload waits for a held plugin_ptr keeps nothing: the old instance goes "
          "with that plugin_ptr") {
  sandbox box;
  box.install("counter_v1");
  auto journal = box.journal;
  // The program's io_context: its handlers go with the reloader below (as if it were
  // destroyed too), but the object stays, since the plugin's own timer needs it until the
  // plugin is gone.
  struct program_io : asio::io_context {
    using asio::io_context::shutdown;
  } io;
  hr::plugin_ptr<test::counter_iface> held;
  {
    auto opts = box.opts();
    opts.verbosity = hr::log_level::off;
    reloader r(io.get_executor(), opts);
    run(io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      held = co_await r.async_get("counter", use_awaitable);
      box.install("counter_v2");
      asio::co_spawn(io, r.async_reload_plugin("counter", use_awaitable), asio::detached);
      // The reload's job closed the gate and waits for `held` (up to max_caller_wait).
      REQUIRE(co_await comes_true([&] { return !r.try_get("counter"); }));
    });
  } // the reloader goes while the job waits
  io.shutdown(); // and what the reload left queued on the program's io_context
  CHECK(held->increment() == 1); // the old instance serves its holder on
  CHECK(journal->count("1.0.0:dtor") == 0);
  held.reset(); // its last reference: nothing else may keep it (the job that waited for it is gone)
  CHECK(journal->count("1.0.0:dtor") == 1);
  CHECK(journal->count("2.0.0:ctor") == 0);
}

TEST_CASE("old libraries are unmapped and their shadow copies deleted; 100 reloads leave one mapped, and never more "
          "than the serving one and those still unmapping") {
  harness h;
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    auto first = mapped_under(box.shadow);
    REQUIRE(first.size() == 1);
    box.install("counter_v2");
    co_await r.async_reload_plugin("counter", use_awaitable);
    auto gone = co_await rec.next(hr::event_kind::unloaded);
    CHECK(gone.old_version == "1.0.0");
    auto now = mapped_under(box.shadow);
    CHECK(now.size() == 1);
    CHECK(now != first);
    CHECK(!fs::exists(*first.begin()));
    CHECK(copies_under(box.shadow).size() == 1);

    // The old versions unmap in the background, so on a busy machine the last one or two may
    // still be unmapping when the next reload is done: beyond the serving version, no more may
    // be mapped than were released and not yet reported unloaded.
    std::ptrdiff_t most = 0;
    for (int i = 0; i < 100; ++i) {
      box.install(i % 2 ? "counter_v2" : "counter_v1");
      co_await r.async_reload_plugin("counter", use_awaitable);
      auto unmapping = std::ptrdiff_t(i + 2) - std::ptrdiff_t(rec.count(hr::event_kind::unloaded));
      most = std::max(most, std::ptrdiff_t(mapped_under(box.shadow).size()) - unmapping);
      co_await call_increment(r);
    }
    CHECK(most <= 1);
    co_await rec.next([n = 0](const hr::reload_event& e) mutable {
      return e.kind == hr::event_kind::unloaded && ++n == 100;
    });
    CHECK(mapped_under(box.shadow).size() == 1);
    CHECK(copies_under(box.shadow).size() == 1);
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->count() == 100);
    p.reset();
    co_await r.async_stop(use_awaitable);
    co_await rec.next(hr::event_kind::unloaded);
    CHECK(mapped_under(box.shadow).empty());
    CHECK(copies_under(box.shadow).empty());
  });
}

TEST_CASE("an old version is unmapped off the program's threads: callers get the new version while a library whose "
          "unloading blocks is still unloading, and it is reported unloaded once it is done") {
  harness h;
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  box.install("counter_unload_blocks"); // 1.0.0: its static destructor waits at the gate
  auto& gate = *box.journal;
  // Should the unmapping hold up the program, the test fails instead of hanging.
  auto valve = open_at_the_latest(gate);
  bool held = false; // whether the old library was still unloading while the new one served
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    CHECK(co_await call_increment(r) == 1);
    box.install("counter_v2");
    co_await r.async_reload_plugin("counter", use_awaitable);
    // dlclose of 1.0.0 is now blocked in its static destructor, on hotreload's thread.
    CHECK(co_await comes_true([&] {
      std::lock_guard lk(gate.mu);
      return gate.blocked == 1;
    }));
    for (int i = 2; i <= 4; ++i) {
      auto p = co_await r.async_get("counter", use_awaitable); // not queued behind the unmapping
      CHECK(p->version() == "2.0.0");
      CHECK(p->increment() == i);
    }
    CHECK(r.try_get("counter")->increment() == 5);
    {
      std::lock_guard lk(gate.mu);
      held = gate.blocked == 1 && !gate.open;
    }
    CHECK(rec.count(hr::event_kind::unloaded) == 0); // not reported before it is done
    gate.release();
    auto gone = co_await rec.next(hr::event_kind::unloaded);
    CHECK(gone.old_version == "1.0.0");
    co_await r.async_stop(use_awaitable);
  });
  valve.join();
  CHECK(held);
}

TEST_CASE("an old version whose last reference goes inside its own code (a wait it left pending completes, and its "
          "executor's destructor runs on) is unmapped only once that code has returned") {
  harness h;
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  box.install("counter_lingering"); // 1.0.0: its teardown leaves a wait on this pipe pending
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  box.journal->wake_fd = pipe_fds[0];
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    CHECK(co_await call_increment(r) == 1);
    box.install("counter_v2");
    co_await r.async_reload_plugin("counter", use_awaitable);
    CHECK(co_await call_increment(r) == 2);
    CHECK(rec.count(hr::event_kind::unloaded) == 0); // the pending wait holds 1.0.0
    // The wait completes on this thread; the last copy of its executor, destroyed inside 1.0.0's
    // code, keeps that code running for 50 ms after it let the version go.
    box.journal->linger = true;
    REQUIRE(::write(pipe_fds[1], "x", 1) == 1);
    auto gone = co_await rec.next(hr::event_kind::unloaded);
    CHECK(gone.old_version == "1.0.0");
    CHECK(box.journal->count("woken") == 1);
    CHECK(box.journal->count("lingered") >= 1); // it ran on, and returned, before the unmapping
    box.journal->linger = false;
    co_await r.async_stop(use_awaitable);
  });
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST_CASE("old versions unmapped after their reloader and its io_context are gone: unmapped all the same, and the "
          "unmappings of other reloaders go on") {
  sandbox box;
  box.install("counter_unload_blocks"); // 1.0.0: its static destructor waits at the gate
  auto& gate = *box.journal;
  auto valve = open_at_the_latest(gate);
  {
    asio::io_context io;
    auto opts = box.opts();
    opts.quiesce_timeout = 200ms; // stop's wait for the unmappings, which are held up below
    opts.verbosity = hr::log_level::error;
    reloader r(io.get_executor(), opts);
    run(io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      box.install("counter_v2");
      co_await r.async_reload_plugin("counter", use_awaitable);
      // The unmapping of 1.0.0 is blocked in its static destructor; the next ones queue behind it.
      CHECK(co_await comes_true([&] {
        std::lock_guard lk(gate.mu);
        return gate.blocked == 1;
      }));
      box.install("counter_v1");
      co_await r.async_reload_plugin("counter", use_awaitable);
      co_await r.async_stop(use_awaitable);
    });
  } // the reloader and its io_context are gone, with unmappings of theirs still to come
  gate.release();
  harness h;
  run(h.io, [&]() -> awaitable<void> {
    co_await h.r.async_start(use_awaitable);
    h.box.install("counter_v2");
    co_await h.r.async_reload_plugin("counter", use_awaitable);
    auto gone = co_await h.rec.next(hr::event_kind::unloaded); // not held up behind the others
    CHECK(gone.old_version == "1.0.0");
    co_await h.r.async_stop(use_awaitable);
  });
  valve.join();
}

TEST_CASE("the file of a plugin's next shadow copy is made ahead, off the reload's path, and the next reload uses it") {
  harness h;
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    std::string want = "1.0.0";
    std::set<fs::path> before;
    for (int i = 0; i < 3; ++i) {
      want = want == "1.0.0" ? "2.0.0" : "1.0.0";
      box.install(want == "1.0.0" ? "counter_v1" : "counter_v2");
      co_await r.async_reload_plugin("counter", use_awaitable);
      CHECK((co_await r.async_get("counter", use_awaitable))->version() == want);
      auto mapped = mapped_under(box.shadow);
      REQUIRE(mapped.size() >= 1);
      if (i > 0) CHECK(mapped.count(before.begin()->string()) == 1); // made ahead, and used
      // Made once the background thread wakes (here: to unmap the version replaced), empty.
      co_await rec.next(hr::event_kind::unloaded);
      std::set<fs::path> spare;
      REQUIRE(co_await comes_true([&] { return (spare = copies_under(box.shadow, true)).size() == 1; }));
      CHECK(spare != before);
      CHECK(fs::file_size(*spare.begin()) == 0);
      before = spare;
      CHECK(copies_under(box.shadow).size() == 1);
    }
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("a library that never loads leaves no file made ahead in the shadow directory, nor one open") {
  harness h([](hr::options& o) { o.verbosity = hr::log_level::off; });
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    box.install("not_a_plugin", "stray.so");
    auto [ec, name] = co_await r.async_load_plugin(box.plugins / "stray.so", asio::as_tuple(use_awaitable));
    CHECK(ec == hr::errc::not_a_plugin);
    // A reload wakes the thread that makes the files ahead: for counter's next copy, and
    // none for stray.so's, whose only copy is gone.
    box.install("counter_v2");
    co_await r.async_reload_plugin("counter", use_awaitable);
    co_await rec.next(hr::event_kind::unloaded);
    std::set<fs::path> spare;
    REQUIRE(co_await comes_true([&] { return !(spare = copies_under(box.shadow, true)).empty(); }));
    CHECK(spare.size() == 1);
    CHECK(spare.begin()->filename().string().starts_with("counter."));
    CHECK(open_under(box.shadow) == spare);
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("a served library's file keeps a name in the shadow directory, so a build's rename over it does not "
          "free its blocks; the name goes once its version is replaced or refused, and at stop") {
  harness h;
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  auto inode_now = [&] {
    struct ::stat st{};
    REQUIRE(::stat((box.plugins / "counter.so").c_str(), &st) == 0);
    return st.st_ino;
  };
  // The kept names: (inode, how many names that file has).
  auto kept = [&] {
    std::vector<std::pair<ino_t, nlink_t>> out;
    for (auto& e : fs::recursive_directory_iterator(box.shadow)) {
      struct ::stat st{};
      if (e.path().extension() == ".source" && ::lstat(e.path().c_str(), &st) == 0)
        out.emplace_back(st.st_ino, st.st_nlink);
    }
    return out;
  };
  using names = std::vector<std::pair<ino_t, nlink_t>>;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    auto v1 = inode_now();
    CHECK(kept() == names{{v1, 2}});
    box.install("counter_v2");
    CHECK(kept() == names{{v1, 1}}); // replaced, not freed: the rename only dropped a name
    co_await r.async_reload_plugin("counter", use_awaitable);
    auto gone = co_await rec.next(hr::event_kind::unloaded);
    CHECK(gone.old_version == "1.0.0");
    auto v2 = inode_now();
    CHECK(co_await comes_true([&] { return kept() == names{{v2, 2}}; })); // v1 freed, on hotreload's thread
    box.write("not a library");
    auto [ec] = co_await r.async_reload_plugin("counter", asio::as_tuple(use_awaitable));
    CHECK(ec);
    CHECK(kept() == names{{v2, 1}}); // the served version's file is kept, the refused one's not
    co_await r.async_stop(use_awaitable);
    co_await rec.next(hr::event_kind::unloaded);
    CHECK(co_await comes_true([&] { return kept().empty(); }));
  });
}

TEST_CASE("a plugin's Asio timer and the io_context outlive the plugin: no crash at destruction") {
  sandbox box;
  box.install("counter_v1");
  SUBCASE("stopped, then destroyed") {
    asio::io_context io;
    {
      reloader r(io.get_executor(), box.opts());
      run(io, [&]() -> awaitable<void> {
        co_await r.async_start(use_awaitable);
        box.install("counter_v2");
        co_await r.async_reload_plugin("counter", use_awaitable);
        co_await r.async_stop(use_awaitable);
      });
    }
    io.restart();
    io.run(); // whatever the plugins left queued completes, then the context dies
  }
  SUBCASE("destroyed while the plugin's timer is armed") {
    asio::io_context io;
    {
      reloader r(io.get_executor(), box.opts());
      run(io, [&]() -> awaitable<void> {
        co_await r.async_start(use_awaitable);
        box.install("counter_v2");
        co_await r.async_reload_plugin("counter", use_awaitable);
        auto p = co_await r.async_get("counter", use_awaitable);
        CHECK(p->version() == "2.0.0");
      });
    }
  }
  CHECK(true); // reaching here without a crash is the assertion
}

TEST_CASE("two threads: calls never fail while the plugin is reloaded 200 times") {
  sandbox box;
  box.install("counter_v1");
  asio::io_context io;
  auto opts = box.opts();
  reloader r(io.get_executor(), opts);
  std::atomic<int> calls{0};
  run(
      io,
      [&]() -> awaitable<void> {
        co_await r.async_start(use_awaitable);
        std::atomic<bool> done{false};
        std::atomic<bool> caller_done{false};
        std::exception_ptr caller_error;
        asio::co_spawn(
            io,
            [&]() -> awaitable<void> {
              while (!done) {
                auto p = co_await r.async_get("counter", use_awaitable);
                REQUIRE(p);
                p->increment();
                ++calls;
                if (auto q = r.try_get("counter")) q->count();
              }
            },
            [&](std::exception_ptr e) {
              caller_error = e;
              caller_done = true;
            });
        for (int i = 0; i < 200; ++i) {
          box.install(i % 2 ? "counter_v1" : "counter_v2");
          co_await r.async_reload_plugin("counter", use_awaitable);
        }
        done = true;
        while (!caller_done) co_await asio::post(io, use_awaitable);
        if (caller_error) std::rethrow_exception(caller_error);
        auto p = co_await r.async_get("counter", use_awaitable);
        CHECK(p->count() == calls.load());
        CHECK(r.info("counter")->reloads == 200);
        p.reset();
        co_await r.async_stop(use_awaitable);
      },
      2);
  CHECK(calls > 0);
}

TEST_CASE("try_get's per-thread cache follows every change at once") {
  harness h;
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    auto first = r.try_get("counter"); // cached from here on
    REQUIRE(first);
    CHECK(r.try_get("counter") == first);
    // Disabled while `first` keeps the version alive: the cache must not hand it out.
    CHECK(!r.disable("counter"));
    CHECK(!r.try_get("counter"));
    CHECK(!r.enable("counter"));
    CHECK(r.try_get("counter") == first);

    // Quiescing while `first` is held, then the new version.
    box.install("counter_v2");
    bool reloaded = false;
    asio::co_spawn(io, r.async_reload_plugin("counter", use_awaitable), [&](std::exception_ptr) { reloaded = true; });
    REQUIRE(co_await comes_true([&] { return !r.try_get("counter"); }));
    first.reset();
    co_await rec.next(hr::event_kind::reloaded);
    REQUIRE(r.try_get("counter"));
    CHECK(r.try_get("counter")->version() == "2.0.0");

    // Another reloader of the same interface with a plugin of the same name: its own answers.
    sandbox other;
    other.install("counter_v1");
    reloader r2(io.get_executor(), other.opts());
    co_await r2.async_start(use_awaitable);
    REQUIRE(r2.try_get("counter"));
    CHECK(r2.try_get("counter")->version() == "1.0.0");
    CHECK(r.try_get("counter")->version() == "2.0.0");
    co_await r2.async_stop(use_awaitable);
    CHECK(!r2.try_get("counter"));

    co_await r.async_stop(use_awaitable);
    CHECK(!r.try_get("counter"));
    CHECK(reloaded);
  });
}

TEST_CASE("enable and disable: the flag survives reloads") {
  harness h;
  [[maybe_unused]] auto& box = h.box;
  [[maybe_unused]] auto& io = h.io;
  [[maybe_unused]] auto& r = h.r;
  [[maybe_unused]] auto& rec = h.rec;
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    CHECK(!r.disable("counter"));
    CHECK(!r.try_get("counter"));
    auto [ec, p] = co_await r.async_get("counter", asio::as_tuple(use_awaitable));
    CHECK(ec == hr::errc::plugin_disabled);
    box.install("counter_v2");
    co_await r.async_reload_plugin("counter", use_awaitable);
    CHECK(!r.try_get("counter"));
    CHECK(!r.info("counter")->enabled);
    CHECK(!r.enable("counter"));
    auto q = co_await r.async_get("counter", use_awaitable);
    CHECK(q->version() == "2.0.0");
    CHECK(r.enable("nope") == hr::errc::plugin_not_found);
    q.reset();
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("start: failures are reported, the other plugins serve; duplicates are refused") {
  sandbox box;
  box.install("counter_v1");
  box.install("counter_v2", "counter_copy.so"); // also declares "counter"
  box.install("greeter_named", "other.so");
  box.write("not a library", "broken.so");
  box.write("ignored", "notes.txt");
  asio::io_context io;
  auto opts = box.opts();
  opts.verbosity = hr::log_level::off;
  reloader r(io.get_executor(), opts);
  recorder rec;
  rec.attach(r);
  run(io, [&]() -> awaitable<void> {
    auto [ec] = co_await r.async_start(asio::as_tuple(use_awaitable));
    CHECK(ec == hr::errc::load_failed); // broken.so sorts first
    // Each failure once: the rescan that follows the first load (for what changed before the
    // watch began) leaves the refused files alone, unchanged since.
    std::multiset<hr::errc> codes;
    for (auto& e : rec.events)
      if (e.kind == hr::event_kind::load_failed) codes.insert(static_cast<hr::errc>(e.error.code.value()));
    CHECK(codes == std::multiset<hr::errc>{hr::errc::load_failed, hr::errc::duplicate_plugin});
    CHECK(r.plugins().size() == 2);
    CHECK((co_await r.async_get("counter", use_awaitable))->version() == "1.0.0");
    CHECK((co_await r.async_get("other", use_awaitable))->version() == "1.0.0");
    auto [ec2] = co_await r.async_start(asio::as_tuple(use_awaitable));
    CHECK(ec2 == hr::errc::already_started);
    co_await r.async_stop(use_awaitable);
    // start/stop/start: the state survives in json_state.
    co_await r.async_start(asio::as_tuple(use_awaitable));
    CHECK(r.try_get("counter"));
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("state survives stop and start with json_state, not with null_state") {
  sandbox box;
  box.install("counter_v1");
  asio::io_context io;
  SUBCASE("json_state") {
    reloader r(io.get_executor(), box.opts());
    run(io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      co_await call_increment(r);
      r.disable("counter");
      co_await r.async_stop(use_awaitable);
      co_await r.async_start(use_awaitable);
      CHECK(!r.info("counter")->enabled);
      r.enable("counter");
      CHECK(co_await call_increment(r) == 2);
      co_await r.async_stop(use_awaitable);
    });
  }
  SUBCASE("null_state") {
    hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher, hr::dll_loader, hr::null_state> r(
        io.get_executor(), box.opts());
    run(io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      auto p = co_await r.async_get("counter", use_awaitable);
      p->increment();
      p.reset();
      box.install("counter_v2");
      co_await r.async_reload_plugin("counter", use_awaitable);
      p = co_await r.async_get("counter", use_awaitable);
      CHECK(p->count() == 0);
      p.reset();
      co_await r.async_stop(use_awaitable);
    });
    auto log = box.journal->take();
    CHECK(std::find(log.begin(), log.end(), "1.0.0:get_state") == log.end());
  }
}

TEST_CASE("shadow directories of dead processes are removed at start; live ones are kept") {
  sandbox box;
  box.install("counter_v1");
  auto stale = box.shadow / "hotreload-999999-1";
  fs::create_directories(stale);
  std::ofstream(stale / ".lock");
  std::ofstream(stale / "counter.1.so") << "stale";
  auto unrelated = box.shadow / "not-ours";
  fs::create_directories(unrelated);
  std::ofstream(unrelated / ".lock");
  asio::io_context io;
  reloader other(io.get_executor(), box.opts()); // a live sibling
  reloader r(io.get_executor(), box.opts());
  run(io, [&]() -> awaitable<void> {
    co_await other.async_start(use_awaitable);
    co_await r.async_start(use_awaitable);
    CHECK(!fs::exists(stale));
    CHECK(fs::exists(unrelated));
    CHECK(mapped_under(box.shadow).size() == 2);
    co_await r.async_stop(use_awaitable);
    co_await other.async_stop(use_awaitable);
  });
}

TEST_CASE("a missing plugin directory is an error at start") {
  sandbox box;
  asio::io_context io;
  auto opts = box.opts();
  opts.plugin_dirs.push_back(box.root / "does-not-exist");
  reloader r(io.get_executor(), opts);
  run(io, [&]() -> awaitable<void> {
    auto [ec] = co_await r.async_start(asio::as_tuple(use_awaitable));
    CHECK(ec == hr::errc::bad_plugin_dir);
  });
}

TEST_CASE("async_stop then async_start at once: the start waits for the stop, then succeeds") {
  harness h;
  run(h.io, [&]() -> awaitable<void> {
    co_await h.r.async_start(use_awaitable);
    CHECK(co_await call_increment(h.r) == 1);
    std::optional<hr::error_code> stopped;
    h.r.async_stop([&](hr::error_code ec) { stopped = ec; });
    auto [ec] = co_await h.r.async_start(asio::as_tuple(use_awaitable));
    CHECK(ec == hr::error_code());
    REQUIRE(stopped);
    CHECK(!*stopped);
    CHECK(h.rec.count(hr::event_kind::stopped) == 1);
    CHECK(co_await call_increment(h.r) == 2); // the state went through the stop and back
    co_await h.r.async_stop(use_awaitable);
  });
}

namespace {
// dll_loader, counting the libraries it loads.
struct counting_loader : hr::dll_loader {
  using hr::dll_loader::dll_loader;
  static inline std::atomic<int> loads{0};
  awaitable<std::pair<hr::loaded_library, hr::error_info>> async_load(std::filesystem::path file) {
    ++loads;
    return hr::dll_loader::async_load(std::move(file));
  }
};
} // namespace

TEST_CASE("a plugin taken over by a library under a new file name: that library is loaded once") {
  sandbox box;
  box.install("counter_v1");
  asio::io_context io;
  hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher, counting_loader> r(io.get_executor(), box.opts());
  run(io, [&]() -> awaitable<void> {
    co_await r.async_start(use_awaitable);
    CHECK(co_await call_increment(r) == 1);
    box.install("counter_v2", "counter-new.so");
    fs::remove(box.plugins / "counter.so");
    auto before = counting_loader::loads.load();
    auto name = co_await r.async_load_plugin(box.plugins / "counter-new.so", use_awaitable);
    CHECK(name == "counter");
    CHECK(counting_loader::loads - before == 1);
    auto p = co_await r.async_get("counter", use_awaitable);
    CHECK(p->version() == "2.0.0");
    CHECK(p->count() == 1);
    CHECK(r.info("counter")->path == box.plugins / "counter-new.so");
    p.reset();
    co_await r.async_stop(use_awaitable);
  });
}

TEST_CASE("a version that cannot unload is reported pinned, never unloaded, and its causes are named") {
  const std::pair<const char*, const char*> cases[] = {
      {"counter_thread_local", "thread_local objects with destructors"}, {"counter_gnu_unique", "-fno-gnu-unique"}};
  for (auto& c : cases) {
    std::string variant = c.first, cause = c.second;
    CAPTURE(variant);
    if (variant == "counter_gnu_unique" && hr::detail::inspect_elf(sandbox::built(variant)).unique_count == 0) {
      MESSAGE("this compiler emits no STB_GNU_UNIQUE symbols (clang): nothing pins " << variant);
      continue;
    }
    sandbox box;
    box.install(variant);
    asio::io_context io;
    auto opts = box.opts();
    std::vector<std::string> warnings;
    opts.sink = [&](const hr::log_record& l) {
      if (l.level == hr::log_level::warning) warnings.emplace_back(l.message);
    };
    reloader r(io.get_executor(), opts);
    recorder rec;
    rec.attach(r);
    run(io, [&]() -> awaitable<void> {
      co_await r.async_start(use_awaitable);
      CHECK(co_await call_increment(r) == 1); // on this thread, which lives on
      box.install("counter_v2");
      co_await r.async_reload_plugin("counter", use_awaitable);
      auto released = co_await rec.next([](const hr::reload_event& e) {
        return e.kind == hr::event_kind::pinned || e.kind == hr::event_kind::unloaded;
      });
      CHECK(released.kind == hr::event_kind::pinned);
      CHECK(released.old_version == "1.0.0");
      CHECK(rec.count(hr::event_kind::unloaded) == 0);
      CHECK(r.info("counter")->pinned_versions == 1);
      CHECK((co_await r.async_get("counter", use_awaitable))->count() == 1); // v2 serves, state kept
      co_await r.async_stop(use_awaitable);
    });
    auto said = [&](const std::string& what) {
      return std::any_of(warnings.begin(), warnings.end(), [&](auto& w) { return w.find(what) != std::string::npos; });
    };
    CHECK(said(cause));   // at load, with the fix
    CHECK(said("pinned")); // at release, with the likely causes
  }
}

