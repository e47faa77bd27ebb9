// A counter plugin, built in several variants (see meson.build): PLUGIN_VERSION sets the
// version, and each FAIL_* / HANG_* macro makes one hook misbehave.
#include "counter_iface.hpp"

#include <hotreload/export.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>

#ifndef PLUGIN_VERSION
#define PLUGIN_VERSION "1.0.0"
#endif
#ifndef PLUGIN_NAME
#define PLUGIN_NAME "counter"
#endif

namespace asio = boost::asio;
using hotreload::awaitable;

class counter_plugin final : public test::counter_iface {
public:
  explicit counter_plugin(const hotreload::plugin_context& ctx)
      : ctx_(ctx), journal_(ctx.shared<test::journal>()), heartbeat_(ctx.executor()) {
    note("ctor");
#ifdef FAIL_CTOR
    throw std::runtime_error("constructor failure requested by the test");
#endif
  }
  ~counter_plugin() override { note("dtor"); }

  std::string version() const override { return PLUGIN_VERSION; }
  int increment() override { return ++count_; }
  int count() const override { return count_; }
  int heartbeats() const override { return beats_; }

  awaitable<void> setup_async() override {
    note("setup");
#ifdef FAIL_SETUP
    throw std::runtime_error("setup failure requested by the test");
#endif
    arm();
    co_return;
  }
  awaitable<void> teardown_async() override {
    note("teardown");
    heartbeat_.cancel();
    co_return;
  }
  awaitable<void> on_reload_async() override {
    note("on_reload");
#ifdef FAIL_ON_RELOAD
    throw std::runtime_error("on_reload_async failure requested by the test");
#endif
#ifdef THROW_NON_STD
    throw 42;
#endif
#ifdef HANG_ON_RELOAD
    asio::steady_timer forever(co_await asio::this_coro::executor, std::chrono::hours(1));
    co_await forever.async_wait(asio::as_tuple(asio::use_awaitable));
#endif
    arm();
    co_return;
  }
  awaitable<boost::json::value> get_reload_state() override {
    note("get_state");
#ifdef FAIL_GET_STATE
    throw std::runtime_error("get_reload_state failure requested by the test");
#endif
    co_return boost::json::object{{"count", count_.load()}};
  }
  awaitable<void> set_reload_state(boost::json::value state) override {
    note("set_state");
#ifdef FAIL_SET_STATE
    throw std::runtime_error("set_reload_state failure requested by the test");
#endif
    if (auto* o = state.if_object())
      if (auto* c = o->if_contains("count")) count_ = static_cast<int>(c->to_number<std::int64_t>());
    co_return;
  }

private:
  void note(const char* what) {
    if (journal_) journal_->add(std::string(PLUGIN_VERSION) + ":" + what);
  }
  // A timer of a kind the host itself never uses, whose handler is plugin code.
  void arm() {
    heartbeat_.expires_after(std::chrono::hours(1));
    heartbeat_.async_wait([this](boost::system::error_code ec) {
      if (!ec) ++beats_;
    });
  }

  hotreload::plugin_context ctx_;
  test::journal* journal_;
  asio::system_timer heartbeat_;
  std::atomic<int> count_{0};
  std::atomic<int> beats_{0};
};

HOTRELOAD_PLUGIN(counter_plugin, R"({"name": ")" PLUGIN_NAME R"(", "version": ")" PLUGIN_VERSION R"("})")
