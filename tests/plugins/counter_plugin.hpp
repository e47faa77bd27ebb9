// The body of every test plugin. Each file in variants/ is one plugin library: it says what
// it is, defines the settings below, and includes this file. PLUGIN_NAME and PLUGIN_VERSION
// set the metadata; DEP1/DEP2 (DEP1_REQ) its dependencies; HOOK_DELAY_MS makes every
// lifecycle hook wait on a timer; FAIL_ON_RELOAD makes on_reload_async throw. At run time,
// options.plugin_config {"counter": {"fail_hook": H, "fail_how": "std"|"int"|"hang"|"block",
// "fail_version": V}} makes hook H (ctor, setup, teardown, get_state, set_state,
// migrate_state, on_reload) of version V (default: every version) throw a std::exception,
// throw an int, never finish (suspended), or "block" its thread until the test opens the
// journal's gate. STATE_V2: state_version 2, state {"total", "history"}, with
// a migration from state_version 1. META_SLOT: the metadata lives in a 1.2 MB array that
// tests patch in copies of the file; with NO_METADATA_EXPORT / NO_CREATE_EXPORT, one export
// is missing. STATIC_INIT_THROWS / STATIC_INIT_HANGS / STATIC_INIT_EXITS: a static initialiser
// throws / never returns / calls exit(0). STATIC_INIT_THREAD / STATIC_INIT_FD: a static
// initialiser starts a thread that never ends / opens a descriptor it never closes (loaded only
// by probes: what they leave behind makes a probe worker unclean). STATIC_INIT_LEAKS: a static
// initialiser maps 80 MB, resident, and never unmaps them (loaded only by probes: a worker
// that grew so leaves). CALLS_UNDEFINED_AT_INIT /
// CALLS_UNDEFINED_LATER: a function that no library defines is called by a static initialiser
// / by increment().
// THREAD_LOCAL_STATE: increment() touches a thread_local std::string (which pins the library).
#include "counter_iface.hpp"

#include <hotreload/export.hpp>

#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/system_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <thread>

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
#ifdef STATE_V2
#define PLUGIN_STATE_VERSION R"(, "state_version": 2)"
#else
#define PLUGIN_STATE_VERSION ""
#endif
// Every lifecycle hook waits this long on an Asio timer (async work, not blocking); the
// configuration's "delay_ms" overrides it.
#ifndef HOOK_DELAY_MS
#define HOOK_DELAY_MS 0
#endif

namespace asio = boost::asio;
using hotreload::awaitable;

#ifdef STATIC_INIT_THROWS
namespace {
struct throws_at_load {
  throws_at_load() { throw std::runtime_error("static initialiser failure requested by the test"); }
} throws_at_load_instance;
} // namespace
#endif
#ifdef STATIC_INIT_EXITS
namespace {
struct exits_at_load {
  exits_at_load() { std::exit(0); }
} exits_at_load_instance;
} // namespace
#endif
#ifdef STATIC_INIT_THREAD
namespace {
struct thread_at_load {
  thread_at_load() {
    std::thread([] {
      for (;;) ::pause();
    }).detach();
  }
} thread_at_load_instance;
} // namespace
#endif
#ifdef STATIC_INIT_FD
namespace {
struct fd_at_load {
  int fd = ::dup(0);
} fd_at_load_instance;
} // namespace
#endif
#ifdef STATIC_INIT_LEAKS
#include <sys/mman.h>
namespace {
struct leak_at_load {
  void* at = ::mmap(nullptr, 80u << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
} leak_at_load_instance;
} // namespace
#endif
#ifdef LINKS_COUNTER_DEP
#include "counter_dep.hpp"
namespace {
const int counter_dep_at_load = counter_dep_bump() + ++shared_count();
} // namespace
#endif
#if defined(CALLS_UNDEFINED_AT_INIT) || defined(CALLS_UNDEFINED_LATER)
extern "C" int hotreload_test_undefined_function();
#endif
#ifdef CALLS_UNDEFINED_AT_INIT
namespace {
struct calls_undefined_at_load {
  int value = hotreload_test_undefined_function();
} calls_undefined_at_load_instance;
} // namespace
#endif
#ifdef STATIC_DTOR_BLOCKS
namespace {
test::journal* unload_gate = nullptr; // the journal of the last instance made
struct blocks_at_unload {
  ~blocks_at_unload() {
    if (unload_gate) unload_gate->block();
  }
} blocks_at_unload_instance;
} // namespace
#endif
#ifdef STATIC_INIT_HANGS
namespace {
struct hangs_at_load {
  hangs_at_load() {
    for (;;) ::pause();
  }
} hangs_at_load_instance;
} // namespace
#endif

#ifdef TEARDOWN_LEAVES_LINGERING_OP
#include <boost/asio/posix/basic_stream_descriptor.hpp>
// An executor of the plugin's own around its context's (legal: Asio takes any executor). A copy
// destroyed while the journal's `linger` is set releases the executor it wraps and then goes on
// running plugin code for 50 ms. The last copy of an operation's executor is destroyed inside
// the operation's completion (Asio's code, instantiated in this library).
struct lingering_executor {
  asio::any_io_executor inner;
  test::journal* j;
  lingering_executor(asio::any_io_executor e, test::journal* jn) : inner(std::move(e)), j(jn) {}
  lingering_executor(const lingering_executor&) noexcept = default;
  lingering_executor& operator=(const lingering_executor&) noexcept = default;
  ~lingering_executor() {
    bool linger = inner && j->linger.load();
    inner = asio::any_io_executor();
    if (!linger) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(50)); // plugin code, still running
    j->add("lingered");
  }
  template <class P>
    requires asio::can_query<const asio::any_io_executor&, const P&>::value
  decltype(auto) query(const P& p) const {
    return asio::query(inner, p);
  }
  template <class F>
  void execute(F&& f) const {
    inner.execute(std::forward<F>(f));
  }
  friend bool operator==(const lingering_executor& a, const lingering_executor& b) noexcept {
    return a.inner == b.inner;
  }
  friend bool operator!=(const lingering_executor& a, const lingering_executor& b) noexcept { return !(a == b); }
};
#endif

class counter_plugin final : public test::counter_iface {
public:
  explicit counter_plugin(const hotreload::plugin_context& ctx)
      : ctx_(ctx), journal_(ctx.shared<test::journal>()), heartbeat_(ctx.executor()) {
    note("ctor");
    fail_now("ctor");
#ifdef STATIC_DTOR_BLOCKS
    unload_gate = journal_;
#endif
  }
  ~counter_plugin() override { note("dtor"); }

  std::string version() const override { return PLUGIN_VERSION; }
  int increment() override {
#ifdef THREAD_LOCAL_STATE
    // A thread_local with a destructor, touched on the caller's (long-lived) thread.
    static thread_local std::string last_call;
    last_call = "increment";
#endif
#ifdef CALLS_UNDEFINED_LATER
    count_ += hotreload_test_undefined_function();
#endif
    return ++count_;
  }
  int count() const override { return count_; }
  int heartbeats() const override { return beats_; }

  awaitable<void> setup_async() override {
    co_await delay();
    note("setup");
    co_await maybe_fail("setup");
    see_dependencies();
    arm();
    co_return;
  }
  awaitable<void> teardown_async() override {
    co_await delay();
    note("teardown");
    heartbeat_.cancel();
#ifdef TEARDOWN_LEAVES_LINGERING_OP
    // A wait on the journal's descriptor, through the executor above, that outlives this
    // instance: it holds this version until the test writes to the descriptor.
    using descriptor = asio::posix::basic_stream_descriptor<lingering_executor>;
    auto d = std::make_shared<descriptor>(lingering_executor(ctx_.executor(), journal_),
                                          ::dup(journal_->wake_fd));
    d->async_wait(descriptor::wait_read, [d, j = journal_](boost::system::error_code) { j->add("woken"); });
#endif
    co_await maybe_fail("teardown");
    co_return;
  }
  awaitable<void> on_reload_async() override {
    co_await delay();
    note("on_reload");
    co_await maybe_fail("on_reload");
    see_dependencies();
#ifdef FAIL_ON_RELOAD
    throw std::runtime_error("on_reload_async failure requested by the test");
#endif
    arm();
    co_return;
  }
  awaitable<boost::json::value> get_reload_state() override {
    note("get_state");
    co_await maybe_fail("get_state");
#ifdef STATE_V2
    history_.emplace_back(PLUGIN_VERSION);
    boost::json::object state{{"total", count_.load()}, {"history", history_}};
#else
    boost::json::object state{{"count", count_.load()}};
#endif
    // options.plugin_config {"counter": {"state_bytes": N}}: a state of about N bytes.
    if (auto* n = ctx_.config().if_contains("state_bytes"))
      state["blob"] = boost::json::string(static_cast<std::size_t>(n->to_number<std::int64_t>()), 'x'); // built in place
    co_return state;
  }
#ifdef STATE_V2
  // Takes its own copy of the state (the default adopt_reload_state makes it).
  awaitable<void> set_reload_state(boost::json::value state) override {
    note("set_state");
    co_await maybe_fail("set_state");
    // Only ever given its own format: older ones went through migrate_state.
    count_ = static_cast<int>(state.at("total").to_number<std::int64_t>());
    history_ = std::move(state.at("history").as_array());
    co_return;
  }
#else
  // Shares the state instead: reads its count and keeps the rest as it is (a large state
  // costs no copy). With the configuration's "journal_state", notes where the state is.
  awaitable<void> adopt_reload_state(std::shared_ptr<const boost::json::value> state) override {
    note("set_state");
    if (ctx_.config().contains("journal_state"))
      note("state at " + std::to_string(reinterpret_cast<std::uintptr_t>(state.get())));
    co_await maybe_fail("set_state");
    if (auto* o = state->if_object())
      if (auto* c = o->if_contains("count")) count_ = static_cast<int>(c->to_number<std::int64_t>());
    kept_ = std::move(state);
    co_return;
  }
#endif
#ifdef STATE_V2
  awaitable<boost::json::value> migrate_state(std::int64_t from, boost::json::value state) override {
    note("migrate_state");
    co_await maybe_fail("migrate_state");
    if (from != 1) co_return co_await counter_iface::migrate_state(from, std::move(state)); // refuse
    boost::json::object out{{"total", state.at("count")}, {"history", boost::json::array{}}};
    co_return out;
  }
#endif

private:
  // The failure asked for in the configuration, if it is for this hook and version.
  const char* failure_for(const char* hook) const {
    auto& c = ctx_.config();
    auto* h = c.if_contains("fail_hook");
    if (!h || !h->is_string() || h->as_string() != hook) return nullptr;
    if (auto* v = c.if_contains("fail_version"); v && v->is_string() && v->as_string() != PLUGIN_VERSION)
      return nullptr;
    auto* how = c.if_contains("fail_how");
    return how && how->is_string() ? how->as_string().c_str() : "std";
  }
  void fail_now(const char* hook) const {
    auto how = failure_for(hook);
    if (!how) return;
    if (std::string_view(how) == "block") return journal_->block();
    if (std::string_view(how) == "int") throw 42;
    throw std::runtime_error(std::string(hook) + " failure requested by the configuration");
  }
  awaitable<void> maybe_fail(const char* hook) const {
    auto how = failure_for(hook);
    if (how && std::string_view(how) == "hang") {
      asio::steady_timer forever(co_await asio::this_coro::executor, std::chrono::hours(1));
      co_await forever.async_wait(asio::as_tuple(asio::use_awaitable));
      co_return;
    }
    fail_now(hook);
  }
  void note(const std::string& what) {
    if (journal_) journal_->add(std::string(PLUGIN_VERSION) + ":" + what);
  }
  // HOOK_DELAY_MS, or the configuration's "delay_ms".
  awaitable<void> delay() {
    std::int64_t ms = HOOK_DELAY_MS;
    if (auto* d = ctx_.config().if_contains("delay_ms")) ms = d->to_number<std::int64_t>();
    if (ms == 0) co_return;
    asio::steady_timer t(ctx_.executor(), std::chrono::milliseconds(ms));
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
#ifdef STATE_V2
  boost::json::array history_;
#else
  std::shared_ptr<const boost::json::value> kept_; // the last state adopted
#endif
  std::atomic<int> beats_{0};
};

#ifndef META_SLOT
HOTRELOAD_PLUGIN(counter_plugin, R"({"name": ")" PLUGIN_NAME R"(", "version": ")" PLUGIN_VERSION R"(")" PLUGIN_DEPS
                                     PLUGIN_STATE_VERSION "}")
#else
// What HOTRELOAD_PLUGIN exports, with the metadata in a slot big enough for any test JSON.
static_assert(::hotreload::detail::check_plugin_class<counter_plugin>());
extern "C" HOTRELOAD_EXPORT const ::hotreload::abi_tag hotreload_abi_tag =
    ::hotreload::make_abi_tag<counter_plugin::interface_type>();
#ifndef NO_METADATA_EXPORT
extern "C" HOTRELOAD_EXPORT const char hotreload_metadata[1200 * 1024] =
    R"({"name": "counter", "version": "1.0.0", "slot": "METADATA-SLOT"})";
#endif
#ifndef NO_CREATE_EXPORT
extern "C" HOTRELOAD_EXPORT void* hotreload_create(const ::hotreload::plugin_context& context,
                                                   std::string& error) noexcept {
  return ::hotreload::detail::create_plugin<counter_plugin>(context, error);
}
#endif
#endif
