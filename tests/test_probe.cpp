// Hardening, the probe: static initialisers that throw, crash or hang cost the program
// nothing, and the probe process neither blocks the reloader's thread nor holds the program's
// resources.
#include "hardening.hpp"

using namespace test;

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
