// What the hardening tests share: a bad new version of a running plugin, and the check that
// it is refused with its own error while the old version serves on with its state.
#ifndef HOTRELOAD_TESTS_HARDENING_HPP
#define HOTRELOAD_TESTS_HARDENING_HPP

#include "support.hpp"

#include <random>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace test {

inline std::string bytes_of(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// counter_meta_slot (a valid plugin) with its metadata text replaced by `json`.
inline std::string with_metadata(const std::string& json) {
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
inline void check_refused(const bad_version& b) {
  CAPTURE(b.what);
  sandbox box;
  box.install("counter_v1");
  asio::io_context io;
  auto opts = box.opts();
  opts.timeouts = {.setup = 300ms, .teardown = 300ms, .on_reload = 300ms, .get_state = 300ms, .set_state = 300ms, .construct = 300ms};
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

inline boost::json::object failing(const char* hook, const char* how, const char* version = "2.0.0") {
  return {{"fail_hook", hook}, {"fail_how", how}, {"fail_version", version}};
}

} // namespace test

#endif
