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
// Up to two dependencies: DEP1/DEP2 name a plugin, DEP1_REQ a version requirement.
#ifndef DEP1_REQ
#define DEP1_REQ ""
#endif
#if defined(DEP2)
#define PLUGIN_DEPS R"(, "depends_on": [")" DEP1 " " DEP1_REQ R"(", ")" DEP2 R"("])"
#elif defined(DEP1)
#define PLUGIN_DEPS R"(, "depends_on": [")" DEP1 " " DEP1_REQ R"("])"
#else
#define PLUGIN_DEPS ""
#endif
#if defined(DEP2)
#define DEP_NAMES DEP1, DEP2,
#elif defined(DEP1)
#define DEP_NAMES DEP1,
#else
#define DEP_NAMES
#endif
// Every lifecycle hook waits this long on an Asio timer (async work, not blocking).
#ifndef HOOK_DELAY_MS
#define HOOK_DELAY_MS 0
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
    co_await delay();
    note("setup");
    see_dependencies();
#ifdef FAIL_SETUP
    throw std::runtime_error("setup failure requested by the test");
#endif
    arm();
    co_return;
  }
  awaitable<void> teardown_async() override {
    co_await delay();
    note("teardown");
    heartbeat_.cancel();
    co_return;
  }
  awaitable<void> on_reload_async() override {
    co_await delay();
    note("on_reload");
    see_dependencies();
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
    boost::json::object state{{"count", count_.load()}};
    // options.plugin_config {"counter": {"state_bytes": N}}: a state of about N bytes.
    if (auto* n = ctx_.config().if_contains("state_bytes"))
      state["blob"] = std::string(static_cast<std::size_t>(n->to_number<std::int64_t>()), 'x');
    co_return state;
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
  void note(const std::string& what) {
    if (journal_) journal_->add(std::string(PLUGIN_VERSION) + ":" + what);
  }
  awaitable<void> delay() {
    if (HOOK_DELAY_MS == 0) co_return;
    asio::steady_timer t(ctx_.executor(), std::chrono::milliseconds(HOOK_DELAY_MS));
    co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  // Records "<name> sees <dependency> <version>" for each dependency, through the context.
  void see_dependencies() {
    const char* const deps[] = {DEP_NAMES nullptr};
    for (const char* const* d = deps; *d; ++d) {
      const char* dep = *d;
      auto p = ctx_.get<test::counter_iface>(dep);
      if (journal_)
        journal_->add(std::string(PLUGIN_NAME) + " sees " + dep + " " + (p ? p->version() : std::string("nothing")));
    }
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

HOTRELOAD_PLUGIN(counter_plugin, R"({"name": ")" PLUGIN_NAME R"(", "version": ")" PLUGIN_VERSION R"(")" PLUGIN_DEPS "}")
