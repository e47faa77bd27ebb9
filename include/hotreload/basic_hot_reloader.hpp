#ifndef HOTRELOAD_BASIC_HOT_RELOADER_HPP
#define HOTRELOAD_BASIC_HOT_RELOADER_HPP

#include <hotreload/abi.hpp>
#include <hotreload/config.hpp>
#include <hotreload/detail/async.hpp>
#include <hotreload/detail/async_mutex.hpp>
#include <hotreload/detail/files.hpp>
#include <hotreload/detail/keepalive_executor.hpp>
#include <hotreload/detail/leak.hpp>
#include <hotreload/detail/services.hpp>
#include <hotreload/error.hpp>
#include <hotreload/events.hpp>
#include <hotreload/loader/dll_loader.hpp>
#include <hotreload/loader/loader.hpp>
#include <hotreload/log.hpp>
#include <hotreload/metadata.hpp>
#include <hotreload/options.hpp>
#include <hotreload/plugin.hpp>
#include <hotreload/plugin_ptr.hpp>
#include <hotreload/state/json_state.hpp>
#include <hotreload/state/state_store.hpp>
#include <hotreload/watcher/default_watcher.hpp>
#include <hotreload/watcher/manual_watcher.hpp>
#include <hotreload/watcher/watcher.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <fnmatch.h>

namespace hotreload {

/// A plugin as the reloader sees it, for listings (`plugins` command, `GET /plugins`).
struct plugin_info {
  std::string name;
  std::string version;                          ///< of the serving version ("" if none)
  std::filesystem::path path;                   ///< the library file in the plugin directory
  bool enabled = true;
  bool serving = false;                         ///< a version is loaded and set up
  std::chrono::system_clock::time_point loaded_at{}; ///< when the serving version was published
  std::size_t reloads = 0;                      ///< successful reloads
  std::int64_t state_version = 1;
  std::optional<error_info> last_error;         ///< of the last failed operation, if any
};

/// Loads plugins implementing `Interface` from shared libraries, reloads them as
/// transactions and hands out plugin_ptrs. Composed from three policies:
/// - Watcher (`watcher` concept): which file changes trigger reloads;
/// - Loader (`loader` concept): how a library file becomes mapped code;
/// - State (`state_store` concept): where state snapshots live between versions.
/// All its work runs on a strand of `Executor`; every member function is thread-safe.
/// Destroy it before its execution context, like any Asio I/O object.
template <class Interface, class Watcher = default_watcher, class Loader = dll_loader, class State = json_state,
          class Executor = asio::any_io_executor>
class basic_hot_reloader {
  static_assert(std::derived_from<Interface, plugin>,
                "basic_hot_reloader<Interface, ...>: Interface must derive from hotreload::plugin");
  static_assert(self_named_interface<Interface>,
                "basic_hot_reloader<Interface, ...>: Interface must name itself: write "
                "`using interface_type = Interface;` (with your interface's name) inside it");
  static_assert(watcher_startable<Watcher>,
                "Watcher policy: needs a member `hotreload::error_info start(const "
                "std::vector<std::filesystem::path>& dirs, hotreload::change_handler on_change)`");
  static_assert(watcher_stoppable<Watcher>, "Watcher policy: needs a member `void stop()`");
  static_assert(loader<Loader>,
                "Loader policy: needs a member `hotreload::loaded_library load(const "
                "std::filesystem::path& file, hotreload::error_info& error)`");
  static_assert(state_store_flag<State>,
                "State policy: needs `static constexpr bool preserves_state = true;` (or false)");
  static_assert(state_store_save<State>,
                "State policy: needs a member `hotreload::error_info save(std::string_view plugin, const "
                "boost::json::object& snapshot)`");
  static_assert(state_store_load<State>,
                "State policy: needs a member `std::optional<boost::json::object> load(std::string_view "
                "plugin)`");

public:
  using executor_type = Executor;
  using interface_type = Interface;
  using watcher_type = Watcher;
  using loader_type = Loader;
  using state_type = State;
  using pointer = plugin_ptr<Interface>;

  /// Builds each policy from (executor, options), (executor), (options) or nothing,
  /// whichever it accepts.
  /// Policies are built in place, so they need not be movable.
  explicit basic_hot_reloader(Executor ex, options opts = {})
      : ex_(ex), strand_(asio::make_strand(ex)), opts_(std::move(opts)),
        hub_(std::make_shared<hub>(strand_, logger(opts_.verbosity, opts_.sink))),
        watcher_(ex_, opts_), loader_(ex_, opts_), state_(ex_, opts_) {
    detail::preload_services(ex_);
  }

  /// Takes ready-made policy objects.
  basic_hot_reloader(Executor ex, options opts, Watcher w, Loader l, State s)
      : ex_(ex), strand_(asio::make_strand(ex)), opts_(std::move(opts)),
        hub_(std::make_shared<hub>(strand_, logger(opts_.verbosity, opts_.sink))), watcher_(std::move(w)),
        loader_(std::move(l)), state_(std::move(s)) {
    detail::preload_services(ex_);
  }

  basic_hot_reloader(const basic_hot_reloader&) = delete;
  basic_hot_reloader& operator=(const basic_hot_reloader&) = delete;

  /// Without async_stop, instances are destroyed without teardown_async.
  ~basic_hot_reloader() {
    {
      std::lock_guard lk(alive_->mu);
      alive_->self = nullptr;
    }
    watcher_.value.stop();
    std::lock_guard lk(mu_);
    for (auto& [name, e] : entries_) e->lease.reset();
  }

  executor_type get_executor() const noexcept { return ex_; }
  const options& get_options() const noexcept { return opts_; }
  Watcher& watcher() noexcept { return watcher_.value; }
  Loader& loader() noexcept { return loader_.value; }
  State& state() noexcept { return state_.value; }

  /// Loads every plugin library found in options.plugin_dirs, then starts the watcher.
  /// Completes with the first failure, if any; the plugins that loaded serve regardless.
  template <class Token = asio::default_completion_token_t<Executor>>
  auto async_start(Token&& token = {}) {
    return run<>(std::forward<Token>(token), [this]() { return start_op(); });
  }

  /// Stops the watcher, then quiesces, snapshots and tears down every plugin.
  template <class Token = asio::default_completion_token_t<Executor>>
  auto async_stop(Token&& token = {}) {
    return run<>(std::forward<Token>(token), [this]() { return stop_op(); });
  }

  /// Reloads one plugin from its library file, as a transaction (see README).
  template <class Token = asio::default_completion_token_t<Executor>>
  auto async_reload_plugin(std::string name, Token&& token = {}) {
    return run<>(std::forward<Token>(token), [this, name = std::move(name)]() { return reload_op(name); });
  }

  /// Loads a plugin from a library file (or reloads it if that file is already loaded).
  /// Completes with the plugin's name.
  template <class Token = asio::default_completion_token_t<Executor>>
  auto async_load_plugin(std::filesystem::path file, Token&& token = {}) {
    return run<std::string>(std::forward<Token>(token),
                            [this, file = std::move(file)]() { return load_file_op(file); });
  }

  /// The plugin's serving version. Never a torn-down or half set-up one: during a reload
  /// the call waits and completes with the new version (or the old one after a rollback).
  template <class Token = asio::default_completion_token_t<Executor>>
  auto async_get(std::string_view name, Token&& token = {}) {
    return detail::initiate<pointer>(std::forward<Token>(token), ex_,
                                     [this, name = std::string(name)](detail::completion<pointer> done) mutable {
                                       if (auto p = try_get(name)) return done({}, std::move(p));
                                       asio::post(strand_, [this, name = std::move(name), done = std::move(done)]() mutable {
                                         get_slow(name, std::move(done));
                                       });
                                     });
  }

  /// The serving version, or an empty pointer if the plugin is unknown, disabled, being
  /// reloaded or failed. Never waits.
  pointer try_get(std::string_view name) const {
    std::lock_guard lk(mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return {};
    auto& e = *it->second;
    if (!e.enabled || e.quiescing || !e.lease) return {};
    return make_pointer(e.lease);
  }

  /// A disabled plugin stays loaded, keeps reloading, and is not handed out.
  error_code enable(std::string_view name) { return set_enabled(name, true); }
  error_code disable(std::string_view name) { return set_enabled(name, false); }

  std::vector<plugin_info> plugins() const {
    std::lock_guard lk(mu_);
    std::vector<plugin_info> out;
    for (auto& [name, e] : entries_) out.push_back(e->info);
    return out;
  }
  std::optional<plugin_info> info(std::string_view name) const {
    std::lock_guard lk(mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) return std::nullopt;
    return it->second->info;
  }

  /// Calls `handler` for every event, on the reloader's strand. Returns an id for unsubscribe.
  std::size_t subscribe(event_handler handler) { return hub_->subscribe(std::move(handler)); }
  void unsubscribe(std::size_t id) { hub_->unsubscribe(id); }

private:
  using strand_type = asio::strand<Executor>;
  using clock = std::chrono::steady_clock;

  // What outlives the reloader: versions still held by plugin_ptrs report their unloading
  // through it, on the strand, for as long as anyone listens.
  struct hub {
    hub(strand_type s, logger l) : strand(std::move(s)), log(std::move(l)) {}
    strand_type strand;
    logger log;
    using handler_list = std::vector<std::pair<std::size_t, event_handler>>;
    std::mutex mu;
    std::shared_ptr<const handler_list> handlers = std::make_shared<handler_list>(); // copied on write
    std::size_t next_id = 0;

    // Versions not yet unmapped, and a timer async_stop waits on until they are.
    std::size_t live_versions = 0;
    std::shared_ptr<asio::steady_timer> drained;

    void unloaded(const std::string& name, const std::string& ver) {
      if (log.enabled(log_level::debug)) log.log(log_level::debug, name, "Unloaded library of plugin: " + name + " " + ver);
      emit(reload_event{event_kind::unloaded, name, ver, {}, reload_step::none, {}, {}});
      if (--live_versions == 0 && drained) drained->cancel();
    }

    std::size_t subscribe(event_handler h) {
      std::lock_guard lk(mu);
      auto next = std::make_shared<handler_list>(*handlers);
      next->emplace_back(++next_id, std::move(h));
      handlers = std::move(next);
      return next_id;
    }
    void unsubscribe(std::size_t id) {
      std::lock_guard lk(mu);
      auto next = std::make_shared<handler_list>(*handlers);
      std::erase_if(*next, [id](auto& p) { return p.first == id; });
      handlers = std::move(next);
    }
    std::shared_ptr<const handler_list> subscribers() {
      std::lock_guard lk(mu);
      return handlers;
    }
    void emit(const reload_event& ev) {
      for (auto& [id, h] : *subscribers()) h(ev);
    }
  };

  // One loaded version of a plugin's library.
  struct version {
    loaded_library library;
    plugin_metadata meta;
  };
  using version_ptr = std::shared_ptr<const version>;

  // The signal a lease sends when the last plugin_ptr to it is gone.
  struct release_signal {
    std::mutex mu;
    bool released = false;
    std::function<void()> wake;
  };

  // What plugin_ptrs share: one publication of one instance.
  struct lease_block {
    lease_block(std::shared_ptr<Interface> i, version_ptr v) : instance(std::move(i)), ver(std::move(v)) {}
    lease_block(const lease_block&) = delete;
    lease_block& operator=(const lease_block&) = delete;
    std::shared_ptr<Interface> instance;
    version_ptr ver;
    std::shared_ptr<release_signal> signal = std::make_shared<release_signal>();
    ~lease_block() {
      std::lock_guard lk(signal->mu);
      signal->released = true;
      if (signal->wake) signal->wake();
    }
  };

  struct entry {
    std::string name;
    std::filesystem::path source;
    // Strand only.
    version_ptr ver;
    std::shared_ptr<Interface> instance;
    detail::async_mutex lock;
    std::vector<detail::completion<pointer>> waiters;
    bool removed = false;
    std::optional<detail::file_stamp> tried; // the library file as last loaded (or tried)
    // Guarded by mu_ (source: written under it).
    std::shared_ptr<lease_block> lease;
    bool enabled = true;
    bool quiescing = true;
    plugin_info info;
  };
  using entry_ptr = std::shared_ptr<entry>;

  enum class hook { setup, teardown, on_reload, get_state, set_state };

  // Holds a policy built in place from whatever it accepts, so that a policy need not be
  // movable (a [[no_unique_address]] member cannot be initialised by elision).
  template <class P>
  struct policy {
    policy(const Executor& ex, const options& o) : value(make(ex, o)) {}
    explicit policy(P&& p) : value(std::move(p)) {}
    static P make(const Executor& ex, const options& o) {
      if constexpr (std::constructible_from<P, Executor, const options&>) return P(ex, o);
      else if constexpr (std::constructible_from<P, Executor>) return P(ex);
      else if constexpr (std::constructible_from<P, const options&>) return P(o);
      else return P();
    }
    P value;
  };

  // Runs `op` (returning awaitable<std::pair<error_info, T...>> or awaitable<error_info>)
  // on the strand and completes the caller's token with its result.
  template <class... T, class Token, class Op>
  auto run(Token&& token, Op op) {
    return detail::initiate<T...>(std::forward<Token>(token), ex_,
                                  [this, op = std::move(op)](detail::completion<T...> done) mutable {
                                    asio::co_spawn(strand_, op(), [done = std::move(done)](std::exception_ptr e, auto r) mutable {
                                      if constexpr (sizeof...(T) == 0) {
                                        if (e) r = internal_error(e);
                                        done(std::move(r));
                                      } else {
                                        if (e) r.first = internal_error(e);
                                        done(std::move(r.first), std::move(r.second));
                                      }
                                    });
                                  });
  }

  static std::string describe(const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      return x.what();
    } catch (...) {
      return "an exception of a type not derived from std::exception";
    }
  }
  static error_info internal_error(const std::exception_ptr& e) {
    return {make_error_code(errc::plugin_unavailable), {}, "internal error in hotreload: " + describe(e)};
  }

  static std::string ms(clock::duration d) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f ms", std::chrono::duration<double, std::milli>(d).count());
    return buf;
  }

  void log(log_level l, std::string_view plugin, const std::string& m) const { hub_->log.log(l, plugin, m); }
  bool debug_on() const { return hub_->log.enabled(log_level::debug); }

  void emit(event_kind k, const std::string& plugin, const version_ptr& old_v, const version_ptr& new_v,
            clock::duration d = {}, error_info err = {}, reload_step step = reload_step::none) {
    auto subscribers = hub_->subscribers();
    if (subscribers->empty()) return;
    if (err.code) err.plugin = plugin;
    reload_event ev{k, plugin, old_v ? old_v->meta.version : std::string(), new_v ? new_v->meta.version : std::string(),
                    step, d, std::move(err)};
    for (auto& [id, h] : *subscribers) h(ev);
  }
  void step(const entry& e, reload_step s, const version_ptr& old_v, const version_ptr& new_v,
            clock::time_point since, std::string_view what) {
    if (debug_on()) log(log_level::debug, e.name, std::string(what) + " for plugin: " + e.name);
    emit(event_kind::reload_step, e.name, old_v, new_v, clock::now() - since, {}, s);
  }

  static pointer make_pointer(const std::shared_ptr<lease_block>& l) {
    return pointer(std::shared_ptr<Interface>(l, l->instance.get()), &l->ver->meta);
  }

  entry_ptr find(std::string_view name) const {
    std::lock_guard lk(mu_);
    auto it = entries_.find(name);
    return it == entries_.end() ? nullptr : it->second;
  }

  error_info fail(const std::string& plugin, errc code, std::string message) const {
    return {make_error_code(code), plugin, std::move(message)};
  }

  // ---- versions and instances -------------------------------------------------------

  // Step 1: a fresh mapping of `file`, its ABI tag checked and its metadata parsed.
  version_ptr load_version(const std::filesystem::path& file, error_info& err) {
    auto lib = loader_.value.load(file, err);
    if (err) return nullptr;
    static const abi_tag ours = make_abi_tag<Interface>();
    if (auto why = abi_mismatch(ours, *lib.tag); !why.empty()) {
      err = fail({}, errc::abi_mismatch, file.string() + " was refused: " + why);
      return nullptr;
    }
    plugin_metadata meta;
    if ((err = parse_metadata(lib.metadata, file.string(), meta))) return nullptr;
    // The last reference may drop anywhere, even inside plugin code still on the stack (a
    // plugin's completion handler being destroyed), so the unmapping always runs later, in a
    // handler of our own on the strand.
    ++hub_->live_versions;
    return version_ptr(new version{std::move(lib), std::move(meta)}, [weak = std::weak_ptr<hub>(hub_)](const version* v) {
      auto h = weak.lock();
      if (!h) {
        // The reloader is gone, so no handler of ours can unmap it, and the caller may be
        // this very library's code. It stays mapped until the process exits.
        detail::deliberately_leak(v);
        return;
      }
      asio::post(h->strand, [weak, owned = std::unique_ptr<const version>(v)]() mutable {
        std::string name = owned->meta.name, ver = owned->meta.version;
        owned.reset();
        if (auto h = weak.lock()) h->unloaded(name, ver);
      });
    });
  }

  // Step 5: a new instance from `v`. Its deleter runs the plugin's destructor and then
  // releases the version, so the code outlives the object.
  std::shared_ptr<Interface> construct(const version_ptr& v, error_info& err) {
    const auto& name = v->meta.name;
    auto cfg = opts_.plugin_config.if_contains(name);
    plugin_context ctx(name, asio::any_io_executor(detail::keepalive_executor<Executor>(ex_, v)),
                       plugin_logger(hub_->log, name),
                       cfg && cfg->is_object() ? cfg->get_object() : boost::json::object(), opts_.shared);
    std::string why;
    void* raw = v->library.create(ctx, why);
    if (!raw) {
      err = fail(name, errc::construct_failed,
                 "plugin '" + name + "' " + v->meta.version + ": constructor threw: " + why +
                     "; fix the constructor (do slow or failing work in setup_async)");
      return nullptr;
    }
    return std::shared_ptr<Interface>(static_cast<Interface*>(raw), [v](Interface* p) { delete p; });
  }

  static std::chrono::milliseconds limit(const hook_timeouts& t, hook h) {
    switch (h) {
    case hook::setup: return t.setup;
    case hook::teardown: return t.teardown;
    case hook::on_reload: return t.on_reload;
    case hook::get_state: return t.get_state;
    case hook::set_state: return t.set_state;
    }
    return t.setup;
  }
  static const char* hook_name(hook h) {
    switch (h) {
    case hook::setup: return "setup_async";
    case hook::teardown: return "teardown_async";
    case hook::on_reload: return "on_reload_async";
    case hook::get_state: return "get_reload_state";
    case hook::set_state: return "set_reload_state";
    }
    return "?";
  }
  static errc hook_error(hook h) {
    switch (h) {
    case hook::setup: return errc::setup_failed;
    case hook::teardown: return errc::teardown_failed;
    case hook::on_reload: return errc::reload_hook_failed;
    case hook::get_state: return errc::state_save_failed;
    case hook::set_state: return errc::state_restore_failed;
    }
    return errc::setup_failed;
  }

  static awaitable<void> call_hook(std::shared_ptr<Interface> p, hook h) {
    switch (h) {
    case hook::setup: co_await p->setup_async(); break;
    case hook::teardown: co_await p->teardown_async(); break;
    case hook::on_reload: co_await p->on_reload_async(); break;
    default: break;
    }
  }
  static awaitable<void> call_get_state(std::shared_ptr<Interface> p, std::shared_ptr<boost::json::value> out) {
    *out = co_await p->get_reload_state();
  }
  static awaitable<void> call_set_state(std::shared_ptr<Interface> p, boost::json::value state) {
    co_await p->set_reload_state(std::move(state));
  }

  // Runs one hook under its time limit. The hook runs on an executor that keeps `v`
  // mapped, so after a timeout (the hook is cancelled and abandoned) its coroutine frame,
  // its instance and its code stay alive until it really finishes.
  awaitable<error_info> run_hook(const version_ptr& v, hook h, awaitable<void> op) {
    struct state {
      explicit state(const strand_type& s) : timer(s) {}
      asio::steady_timer timer;
      asio::cancellation_signal cancel;
      bool done = false;
      std::string error;
    };
    auto st = std::make_shared<state>(strand_);
    auto lim = limit(opts_.timeouts, h);
    auto now = clock::now();
    st->timer.expires_at(lim >= std::chrono::duration_cast<std::chrono::milliseconds>(clock::time_point::max() - now)
                             ? clock::time_point::max()
                             : now + lim);
    asio::co_spawn(asio::any_io_executor(detail::keepalive_executor<strand_type>(strand_, v)), std::move(op),
                   asio::bind_cancellation_slot(st->cancel.slot(), [st](std::exception_ptr e) {
                     st->done = true;
                     if (e) st->error = describe(e);
                     st->timer.cancel();
                   }));
    if (!st->done) co_await st->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    const auto& name = v->meta.name;
    if (!st->done) {
      st->cancel.emit(asio::cancellation_type::all);
      co_return fail(name, errc::hook_timeout,
                     "plugin '" + name + "' " + v->meta.version + ": " + hook_name(h) + " did not finish within " +
                         std::to_string(lim.count()) + " ms and was cancelled (its library stays mapped until it "
                         "ends); make it finish sooner or raise options.timeouts");
    }
    if (!st->error.empty())
      co_return fail(name, hook_error(h),
                     "plugin '" + name + "' " + v->meta.version + ": " + hook_name(h) + " threw: " + st->error);
    co_return error_info{};
  }

  // Steps 5-7 (or constructor + setup_async on a first start): an instance of `v` that is
  // ready to serve, or nothing and the error.
  awaitable<std::shared_ptr<Interface>> bring_up(entry& e, const version_ptr& v,
                                                 const std::optional<boost::json::object>& snapshot, bool first,
                                                 const version_ptr& old_v, clock::time_point t0, error_info& err) {
    auto inst = construct(v, err);
    if (!inst) co_return nullptr;
    if (!first) step(e, reload_step::constructed, old_v, v, t0, "Constructed new instance");
    if constexpr (State::preserves_state) {
      if (snapshot) {
        // Built outside the co_await expression: g++ 12 mishandles temporaries there.
        boost::json::value custom;
        if (auto c = snapshot->if_contains("custom")) custom = *c;
        err = co_await run_hook(v, hook::set_state, call_set_state(inst, std::move(custom)));
        if (err) co_return nullptr;
        if (!first) step(e, reload_step::state_restored, old_v, v, t0, "Restored state");
      }
    }
    const hook h = first ? hook::setup : hook::on_reload;
    err = co_await run_hook(v, h, call_hook(inst, h));
    if (err) co_return nullptr;
    if (!first) step(e, reload_step::reload_hook, old_v, v, t0, "Called on_reload_async");
    co_return inst;
  }

  // ---- publication ------------------------------------------------------------------

  // Step 8: `e.instance` serves; waiting callers resume with it.
  void publish(entry& e, bool reloaded) {
    {
      std::lock_guard lk(mu_);
      e.lease = std::make_shared<lease_block>(e.instance, e.ver);
      e.quiescing = false;
      e.info.version = e.ver->meta.version;
      e.info.state_version = e.ver->meta.state_version;
      e.info.serving = true;
      e.info.loaded_at = std::chrono::system_clock::now();
      if (reloaded) ++e.info.reloads;
    }
    release_waiters(e, {});
  }

  // A failed plugin: nothing serves; callers get `err`.
  void mark_unavailable(entry& e, const error_info& err) {
    e.instance.reset();
    e.ver.reset();
    {
      std::lock_guard lk(mu_);
      e.lease.reset();
      e.quiescing = false;
      e.info.serving = false;
      e.info.version.clear();
      e.info.last_error = err;
    }
    release_waiters(e, err);
  }

  void release_waiters(entry& e, error_info err) {
    auto waiters = std::move(e.waiters);
    e.waiters.clear();
    for (auto& w : waiters) {
      pointer p;
      error_info why = err;
      if (!why) {
        std::lock_guard lk(mu_);
        if (!e.enabled) why = disabled_error(e.name);
        else if (e.lease) p = make_pointer(e.lease);
      }
      w(std::move(why), std::move(p));
    }
  }

  error_info disabled_error(const std::string& name) const {
    return fail(name, errc::plugin_disabled, "plugin '" + name + "' is disabled; call enable(\"" + name + "\")");
  }

  void get_slow(const std::string& name, detail::completion<pointer> done) {
    auto e = find(name);
    if (!e)
      return done(fail(name, errc::plugin_not_found,
                       "no plugin named '" + name + "' is loaded; check its metadata name and the plugin directories"),
                  {});
    error_info err;
    pointer p;
    {
      std::lock_guard lk(mu_);
      if (!e->enabled) err = disabled_error(name);
      else if (e->quiescing) {
        e->waiters.push_back(std::move(done));
        return;
      } else if (e->lease) p = make_pointer(e->lease);
      else
        err = fail(name, errc::plugin_unavailable,
                   "plugin '" + name + "' has no serving version: " +
                       (e->info.last_error ? e->info.last_error->message : std::string("not loaded")) +
                       "; fix it and reload it");
    }
    done(std::move(err), std::move(p));
  }

  // Step 2: no new caller gets the old version, and every plugin_ptr to it is released.
  // On timeout the old version serves again (if `restore`) and the step fails.
  awaitable<error_info> quiesce(entry& e, bool restore) {
    std::shared_ptr<release_signal> sig;
    std::weak_ptr<lease_block> weak;
    std::shared_ptr<lease_block> mine; // dropped after the lock: it may be the last reference
    {
      std::lock_guard lk(mu_);
      e.quiescing = true;
      if (e.lease) {
        sig = e.lease->signal;
        weak = e.lease;
      }
      mine = std::move(e.lease);
      e.lease.reset();
    }
    mine.reset();
    if (!sig) co_return error_info{};
    auto timer = std::make_shared<asio::steady_timer>(strand_, opts_.quiesce_timeout);
    struct clear_wake {
      std::shared_ptr<release_signal> s;
      ~clear_wake() {
        std::lock_guard lk(s->mu);
        s->wake = nullptr;
      }
    } guard{sig};
    bool released;
    {
      std::lock_guard lk(sig->mu);
      released = sig->released;
      if (!released)
        sig->wake = [timer, s = strand_] { asio::post(s, [timer] { timer->cancel(); }); };
    }
    if (!released) co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
    {
      std::lock_guard lk(sig->mu);
      released = sig->released;
    }
    if (released) co_return error_info{};
    if (restore) {
      std::lock_guard lk(mu_);
      e.lease = weak.lock();
      e.quiescing = false;
    }
    if (restore) release_waiters(e, {});
    co_return fail(e.name, errc::quiesce_timeout,
                   "plugin '" + e.name + "': plugin_ptrs to the old version were still held after " +
                       std::to_string(opts_.quiesce_timeout.count()) +
                       " ms; hold plugin_ptrs per request, not for long, or raise options.quiesce_timeout");
  }

  // Undoes step 2 when the reload fails before the old instance was touched.
  void resume_old(entry& e) {
    {
      std::lock_guard lk(mu_);
      e.lease = std::make_shared<lease_block>(e.instance, e.ver);
      e.quiescing = false;
    }
    release_waiters(e, {});
  }

  void record_error(entry& e, const error_info& err) {
    std::lock_guard lk(mu_);
    e.info.last_error = err;
  }

  // ---- operations (all on the strand) -----------------------------------------------

  // The plugin directories: options.plugin_dirs, then the environment variable's entries.
  std::vector<std::filesystem::path> plugin_dirs() const {
    std::vector<std::filesystem::path> dirs = opts_.plugin_dirs;
    if (!opts_.paths_env.empty())
      if (const char* env = std::getenv(opts_.paths_env.c_str())) {
#if defined(_WIN32)
        constexpr char sep = ';';
#else
        constexpr char sep = ':';
#endif
        std::string_view rest = env;
        while (!rest.empty()) {
          auto part = rest.substr(0, rest.find(sep));
          rest.remove_prefix(std::min(rest.size(), part.size() + 1));
          if (!part.empty()) dirs.emplace_back(part);
        }
      }
    for (auto& d : dirs) d = std::filesystem::absolute(d).lexically_normal();
    std::sort(dirs.begin(), dirs.end());
    dirs.erase(std::unique(dirs.begin(), dirs.end()), dirs.end());
    return dirs;
  }

  // The ReloadTrigger: why a changed file is not a plugin library to act on, or nothing.
  std::optional<std::string> ignored_because(const std::filesystem::path& file) const {
    auto name = file.filename().string();
    if (!name.ends_with(opts_.library_suffix)) return "not a " + opts_.library_suffix + " file";
    if (name.ends_with(".swp") || name.ends_with("~") || name.starts_with(".#")) return "an editor temporary";
    const std::filesystem::path* root = nullptr;
    for (auto& d : dirs_) {
      auto rel = file.lexically_relative(d);
      if (!rel.empty() && *rel.begin() != "..") {
        root = &d;
        for (auto& part : rel)
          if (part.string().starts_with(".")) return "hidden";
        break;
      }
    }
    if (!root) return "outside the plugin directories";
    if (!opts_.shadow_dir.empty()) {
      auto rel = file.lexically_relative(std::filesystem::absolute(opts_.shadow_dir).lexically_normal());
      if (!rel.empty() && *rel.begin() != "..") return "in the shadow-copy directory";
    }
    auto matches = [&](const std::vector<std::string>& globs) {
      return std::any_of(globs.begin(), globs.end(),
                         [&](const std::string& g) { return ::fnmatch(g.c_str(), name.c_str(), 0) == 0; });
    };
    if (!opts_.include.empty() && !matches(opts_.include)) return "not matched by options.include";
    if (matches(opts_.exclude)) return "matched by options.exclude";
    return std::nullopt;
  }

  // Every plugin library under the plugin directories, or the first unusable directory.
  error_info find_libraries(std::vector<std::filesystem::path>& files) const {
    for (auto& dir : dirs_) {
      std::error_code ec;
      auto why = !std::filesystem::is_directory(dir, ec) ? std::string("does not exist or is not a directory")
                 : detail::for_each_file(dir, [&](const std::filesystem::path& f) {
                     if (!ignored_because(f)) files.push_back(f);
                   })
                     ? std::string("cannot be read")
                     : std::string();
      if (why.empty()) continue;
      auto err = fail({}, errc::bad_plugin_dir,
                      "plugin directory " + dir.string() + " " + why +
                          "; create it, fix its permissions, or fix options.plugin_dirs / $" + opts_.paths_env);
      if (!opts_.allow_missing_dirs) return err;
      log(log_level::warning, {}, err.message);
    }
    std::sort(files.begin(), files.end());
    return {};
  }

  awaitable<error_info> start_op() {
    if (started_) co_return fail({}, errc::already_started, "async_start called twice; call async_stop first");
    dirs_ = plugin_dirs();
    std::vector<std::filesystem::path> files;
    if (auto err = find_libraries(files)) co_return err;
    started_ = true;
    stopping_ = false;
    error_info first;
    for (auto& f : files) {
      auto [err, name] = co_await load_file_op(f);
      if (err && !first) first = err;
    }
    std::vector<std::filesystem::path> watched;
    for (auto& d : dirs_)
      if (std::error_code ec; std::filesystem::is_directory(d, ec)) watched.push_back(d);
    // A watcher may have a delivery in flight when it is stopped, so what it posts reaches
    // the reloader only through `alive_`, which the destructor clears.
    if (auto err = watcher_.value.start(watched, [alive = alive_, s = strand_, gen = generation_](
                                                     std::vector<file_change> changes) {
          asio::post(s, [alive, gen, changes = std::move(changes)]() mutable {
            std::lock_guard lk(alive->mu);
            if (alive->self && gen == alive->self->generation_) alive->self->on_changes(std::move(changes));
          });
        }))
      co_return err;
    // What changed between the first scan and the watch is caught by a rescan.
    co_await rescan();
    co_return first;
  }

  // What a watcher reports, filtered, then coalesced for options.debounce.
  void on_changes(std::vector<file_change> changes) {
    if (!started_ || stopping_) return;
    for (auto& c : changes) {
      if (c.kind == change_kind::rescan) {
        log(log_level::info, {}, "Rescanning every plugin directory (events were lost or a rescan was asked for, under " +
                                        c.path.string() + ")");
        rescan_pending_ = true;
        continue;
      }
      if (c.kind == change_kind::removed &&
          std::find(dirs_.begin(), dirs_.end(), c.path) != dirs_.end()) {
        log(log_level::warning, {}, "Plugin directory removed: " + c.path.string() + "; its plugins keep serving");
        continue;
      }
      auto why = ignored_because(c.path);
      if (debug_on())
        log(log_level::debug, {}, "Should reload " + c.path.string() + ": " + (why ? "no, " + *why : std::string("yes")));
      if (why) continue;
      const char* what = c.kind == change_kind::removed ? "removed " : c.kind == change_kind::created ? "created " : "modified ";
      log(log_level::info, {}, "File change detected: " + std::string(what) + c.path.string());
      pending_[c.path] = c.kind;
    }
    if (pending_.empty() && !rescan_pending_) return;
    auto now = clock::now();
    if (!debounce_started_) debounce_started_ = now;
    // Each change restarts the window, up to ten windows after the first change.
    debounce_until_ = std::min(now + opts_.debounce, *debounce_started_ + 10 * opts_.debounce);
    if (!flush_scheduled_) {
      flush_scheduled_ = true;
      asio::co_spawn(strand_, debounce(generation_), asio::detached);
    }
  }

  awaitable<void> debounce(std::uint64_t gen) {
    debouncing_ = true;
    struct done {
      bool& flag;
      ~done() { flag = false; }
    } guard{debouncing_};
    while (gen == generation_ && clock::now() < debounce_until_) {
      debounce_timer_ = std::make_shared<asio::steady_timer>(strand_, debounce_until_);
      auto timer = debounce_timer_;
      co_await timer->async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (gen != generation_) co_return;
    flush_scheduled_ = false;
    debounce_started_.reset();
    auto changes = std::exchange(pending_, {});
    if (std::exchange(rescan_pending_, false)) co_return co_await rescan();
    for (auto& [path, kind] : changes) {
      if (gen != generation_) co_return;
      if (kind == change_kind::removed && !detail::stamp_of(path)) co_await removed(path);
      else co_await load_or_reload(path);
    }
  }

  // A library file that may be new or changed: load it, or reload the plugin it holds,
  // unless it is exactly what was last loaded (or tried) from there.
  awaitable<void> load_or_reload(std::filesystem::path file) {
    auto e = find_by_source(file);
    if (e && e->tried && detail::stamp_of(file) == e->tried) co_return;
    if (debug_on()) log(log_level::debug, {}, "Affected plugins: [" + (e ? e->name : file.stem().string()) + "]");
    co_await load_file_op(file);
  }

  // Every plugin directory again: new libraries load, changed ones reload, vanished ones
  // are handled as removed. For lost events and for the start-up window.
  awaitable<void> rescan() {
    std::vector<std::filesystem::path> files;
    if (auto err = find_libraries(files)) log(log_level::warning, {}, err.message);
    for (auto& f : files) co_await load_or_reload(f);
    std::vector<std::filesystem::path> gone;
    {
      std::lock_guard lk(mu_);
      for (auto& [name, e] : entries_)
        if (!detail::stamp_of(e->source)) gone.push_back(e->source);
    }
    for (auto& f : gone) co_await removed(f);
  }

  awaitable<void> removed(std::filesystem::path file) {
    auto e = find_by_source(file);
    if (!e) co_return;
    emit(event_kind::file_removed, e->name, e->ver, nullptr);
    if (opts_.on_remove == remove_action::keep) {
      log(log_level::warning, e->name,
          "Plugin library removed: " + file.string() + "; plugin '" + e->name + "' keeps serving its loaded version");
      co_return;
    }
    co_await e->lock.lock(strand_);
    detail::unlock_on_exit unlock{e->lock};
    if (e->removed || detail::stamp_of(e->source)) co_return; // stopped meanwhile, or back already
    log(log_level::info, e->name, "Plugin library removed: " + file.string() + "; unloading plugin '" + e->name + "'");
    co_await stop_locked(*e);
    std::lock_guard lk(mu_);
    entries_.erase(e->name);
  }

  entry_ptr find_by_source(const std::filesystem::path& file) const {
    std::lock_guard lk(mu_);
    for (auto& [name, e] : entries_)
      if (e->source == file) return e;
    return nullptr;
  }

  awaitable<std::pair<error_info, std::string>> load_file_op(std::filesystem::path file) {
    if (!started_ || stopping_)
      co_return std::pair{fail({}, errc::not_started, "the reloader is not started; call async_start first"), std::string()};
    file = std::filesystem::absolute(file).lexically_normal();
    if (auto existing = find_by_source(file)) co_return std::pair{co_await reload_op(existing->name), existing->name};

    auto t0 = clock::now();
    error_info err;
    auto tried = detail::stamp_of(file);
    auto v = load_version(file, err);
    if (!v) {
      err.plugin = file.stem().string();
      log(log_level::error, err.plugin, "Failed to load plugin library " + file.string() + ": " + err.message);
      emit(event_kind::load_failed, err.plugin, nullptr, nullptr, clock::now() - t0, err);
      co_return std::pair{err, std::string()};
    }
    const auto name = v->meta.name;
    auto e = std::make_shared<entry>();
    e->name = name;
    e->source = file;
    e->info.name = name;
    e->info.path = file;
    entry_ptr renamed;
    {
      std::lock_guard lk(mu_);
      auto [it, inserted] = entries_.try_emplace(name, e);
      if (!inserted && !detail::stamp_of(it->second->source)) {
        renamed = it->second; // its old file is gone: the same plugin under a new file name
        renamed->source = file;
        renamed->info.path = file;
      } else if (!inserted) {
        err = fail(name, errc::duplicate_plugin,
                   "two libraries declare plugin '" + name + "': " + it->second->source.string() + " and " +
                       file.string() + "; the second was not loaded; give one of them another \"name\"");
      }
    }
    if (err) {
      log(log_level::error, name, err.message);
      emit(event_kind::load_failed, name, nullptr, v, clock::now() - t0, err);
      co_return std::pair{err, name};
    }
    if (renamed) {
      v.reset();
      co_return std::pair{co_await reload_op(name), name};
    }
    e->tried = tried;
    co_await e->lock.lock(strand_);
    detail::unlock_on_exit unlock{e->lock};
    err = co_await start_locked(*e, v, t0);
    co_return std::pair{err, name};
  }

  // First start of a plugin (or a restart after it failed): constructor, saved state if
  // the State policy has some, setup_async, publish.
  awaitable<error_info> start_locked(entry& e, version_ptr v, clock::time_point t0) {
    std::optional<boost::json::object> snapshot;
    if constexpr (State::preserves_state) snapshot = state_.value.load(e.name);
    if (snapshot)
      if (auto en = snapshot->if_contains("enabled"); en && en->is_bool()) {
        std::lock_guard lk(mu_);
        e.enabled = en->get_bool();
        e.info.enabled = e.enabled;
      }
    error_info err;
    auto inst = co_await bring_up(e, v, snapshot, true, nullptr, t0, err);
    if (!inst) {
      log(log_level::error, e.name, "Failed to start plugin: " + e.name + ": " + err.message);
      mark_unavailable(e, err);
      emit(event_kind::load_failed, e.name, nullptr, v, clock::now() - t0, err);
      co_return err;
    }
    e.ver = std::move(v);
    e.instance = std::move(inst);
    publish(e, false);
    log(log_level::info, e.name,
        "Loaded plugin: " + e.name + " " + e.ver->meta.version + " (" + ms(clock::now() - t0) + ")");
    emit(event_kind::loaded, e.name, nullptr, e.ver, clock::now() - t0);
    co_return error_info{};
  }

  awaitable<error_info> reload_op(std::string name) {
    auto e = find(name);
    if (!e)
      co_return fail(name, errc::plugin_not_found,
                     "no plugin named '" + name + "' is loaded; check its metadata name and the plugin directories");
    co_await e->lock.lock(strand_);
    detail::unlock_on_exit unlock{e->lock};
    if (!started_ || stopping_ || e->removed)
      co_return fail(name, errc::stopping, "plugin '" + name + "' was not reloaded: the reloader is stopping");
    co_return co_await reload_locked(*e);
  }

  awaitable<error_info> reload_locked(entry& e) {
    auto t0 = clock::now();
    auto failed = [&](error_info err, const version_ptr& nv) {
      record_error(e, err);
      log(log_level::error, e.name, "Reload failed for plugin: " + e.name + ": " + err.message);
      emit(event_kind::reload_failed, e.name, e.ver, nv, clock::now() - t0, err);
      return err;
    };
    log(log_level::info, e.name, "Reloading plugin: " + e.name);
    emit(event_kind::reload_started, e.name, e.ver, nullptr);

    // 1. The new version, validated while the old one serves untouched.
    error_info err;
    e.tried = detail::stamp_of(e.source);
    auto nv = load_version(e.source, err);
    if (!nv) co_return failed(err, nullptr);
    if (nv->meta.name != e.name)
      co_return failed(fail(e.name, errc::name_mismatch,
                            e.source.string() + " now declares plugin '" + nv->meta.name + "', not '" + e.name +
                                "'; a plugin's name must not change across versions"),
                       nv);
    if (!e.instance) co_return co_await start_locked(e, std::move(nv), t0); // it had failed: start afresh
    auto old_v = e.ver;
    step(e, reload_step::library_loaded, old_v, nv, t0, "Loaded new library " + nv->meta.version);

    // 2. Quiesce.
    if ((err = co_await quiesce(e, true))) co_return failed(err, nv);
    step(e, reload_step::quiesced, old_v, nv, t0, "Quiesced");

    // 3. Snapshot.
    boost::json::object snapshot;
    {
      std::lock_guard lk(mu_);
      snapshot["enabled"] = e.enabled;
    }
    snapshot["state_version"] = old_v->meta.state_version;
    if constexpr (State::preserves_state) {
      auto out = std::make_shared<boost::json::value>();
      if ((err = co_await run_hook(old_v, hook::get_state, call_get_state(e.instance, out)))) {
        resume_old(e);
        co_return failed(err, nv);
      }
      snapshot["custom"] = std::move(*out);
      if ((err = state_.value.save(e.name, snapshot))) {
        err.plugin = e.name;
        resume_old(e);
        co_return failed(err, nv);
      }
      step(e, reload_step::state_saved, old_v, nv, t0, "Saved state");
    }

    // 4. Teardown. A failure is reported, but the old instance is going away regardless.
    if (debug_on()) log(log_level::debug, e.name, "Calling teardown_async for plugin: " + e.name);
    if (auto terr = co_await run_hook(old_v, hook::teardown, call_hook(e.instance, hook::teardown))) {
      log(log_level::warning, e.name, terr.message);
      record_error(e, terr);
    }
    step(e, reload_step::torn_down, old_v, nv, t0, "Tore down old instance");
    auto old_instance = std::move(e.instance);
    e.instance.reset();

    // 5-7. The new instance.
    std::optional<boost::json::object> snap{snapshot};
    if (auto inst = co_await bring_up(e, nv, snap, false, old_v, t0, err)) {
      e.ver = nv;
      e.instance = std::move(inst);
      publish(e, true);
      step(e, reload_step::published, old_v, nv, t0, "Published new instance");
      old_instance.reset(); // the old library unloads once its last handle is gone
      log(log_level::info, e.name, "Successfully reloaded plugin: " + e.name + " (" + ms(clock::now() - t0) + ")");
      emit(event_kind::reloaded, e.name, old_v, nv, clock::now() - t0);
      co_return error_info{};
    }
    failed(err, nv);
    nv.reset();

    // Roll back: a fresh instance of the old version, with the same snapshot.
    old_instance.reset();
    error_info rerr;
    if (auto inst = co_await bring_up(e, old_v, snap, false, old_v, t0, rerr)) {
      e.ver = old_v;
      e.instance = std::move(inst);
      publish(e, false);
      log(log_level::warning, e.name,
          "Rolled back plugin: " + e.name + " to " + old_v->meta.version + " (" + ms(clock::now() - t0) + ")");
      emit(event_kind::rolled_back, e.name, old_v, old_v, clock::now() - t0, err);
      co_return err;
    }
    auto total = fail(e.name, errc::rollback_failed,
                      err.message + "; then the rollback to " + old_v->meta.version + " failed too: " + rerr.message +
                          "; the plugin is unavailable until a working version is loaded");
    log(log_level::error, e.name, total.message);
    mark_unavailable(e, total);
    emit(event_kind::reload_failed, e.name, old_v, nullptr, clock::now() - t0, total);
    co_return total;
  }

  awaitable<error_info> stop_op() {
    if (!started_) co_return fail({}, errc::not_started, "async_stop called on a reloader that is not started");
    if (stopping_) co_return fail({}, errc::stopping, "async_stop is already in progress");
    stopping_ = true;
    watcher_.value.stop();
    ++generation_; // pending debounced changes are dropped
    pending_.clear();
    rescan_pending_ = flush_scheduled_ = false;
    debounce_started_.reset();
    if (debounce_timer_) debounce_timer_->cancel();
    while (debouncing_) co_await asio::post(strand_, asio::use_awaitable); // it sees the new generation and ends
    std::vector<entry_ptr> all;
    {
      std::lock_guard lk(mu_);
      for (auto& [name, e] : entries_) all.push_back(e);
    }
    for (auto& e : all) {
      co_await e->lock.lock(strand_);
      detail::unlock_on_exit unlock{e->lock};
      co_await stop_locked(*e);
    }
    {
      std::lock_guard lk(mu_);
      entries_.clear();
    }
    // Let the libraries unmap: what the plugins left queued (cancelled timers, closed
    // sockets) completes first, since it keeps its version mapped.
    if (hub_->live_versions > 0) {
      hub_->drained = std::make_shared<asio::steady_timer>(strand_, opts_.quiesce_timeout);
      co_await hub_->drained->async_wait(asio::as_tuple(asio::use_awaitable));
      hub_->drained.reset();
      if (hub_->live_versions > 0)
        log(log_level::warning, {},
            std::to_string(hub_->live_versions) + " plugin version(s) still referenced after stop (plugin_ptrs held, or "
            "operations the plugins left pending); each unloads when its last reference is released");
    }
    started_ = false;
    stopping_ = false;
    co_return error_info{};
  }

  awaitable<void> stop_locked(entry& e) {
    e.removed = true;
    auto stopping = fail(e.name, errc::stopping, "plugin '" + e.name + "' is stopping");
    if (!e.instance) co_return release_waiters(e, stopping);
    if (auto err = co_await quiesce(e, false))
      log(log_level::warning, e.name, err.message + " (tearing it down anyway: the reloader is stopping)");
    if constexpr (State::preserves_state) {
      boost::json::object snapshot;
      {
        std::lock_guard lk(mu_);
        snapshot["enabled"] = e.enabled;
      }
      snapshot["state_version"] = e.ver->meta.state_version;
      auto out = std::make_shared<boost::json::value>();
      auto err = co_await run_hook(e.ver, hook::get_state, call_get_state(e.instance, out));
      if (!err) {
        snapshot["custom"] = std::move(*out);
        err = state_.value.save(e.name, snapshot);
      }
      if (err) log(log_level::warning, e.name, "State of plugin " + e.name + " not saved at stop: " + err.message);
    }
    if (auto err = co_await run_hook(e.ver, hook::teardown, call_hook(e.instance, hook::teardown)))
      log(log_level::warning, e.name, err.message);
    auto v = std::move(e.ver);
    e.instance.reset();
    {
      std::lock_guard lk(mu_);
      e.lease.reset();
      e.info.serving = false;
    }
    release_waiters(e, stopping);
    log(log_level::info, e.name, "Stopped plugin: " + e.name);
    emit(event_kind::stopped, e.name, v, nullptr);
  }

  error_code set_enabled(std::string_view name, bool on) {
    auto e = find(name);
    if (!e) return make_error_code(errc::plugin_not_found);
    {
      std::lock_guard lk(mu_);
      if (e->enabled == on) return {};
      e->enabled = on;
      e->info.enabled = on;
    }
    asio::post(strand_, [weak = std::weak_ptr<hub>(hub_), e, on] {
      auto h = weak.lock();
      if (!h) return;
      h->log.log(log_level::info, e->name, std::string(on ? "Enabled" : "Disabled") + " plugin: " + e->name);
      auto ver = e->ver ? e->ver->meta.version : std::string();
      h->emit(reload_event{on ? event_kind::enabled : event_kind::disabled, e->name, ver, ver});
    });
    return {};
  }

  Executor ex_;
  strand_type strand_;
  options opts_;
  std::shared_ptr<hub> hub_;
  [[no_unique_address]] policy<Watcher> watcher_;
  [[no_unique_address]] policy<Loader> loader_;
  [[no_unique_address]] policy<State> state_;
  mutable std::mutex mu_;
  std::map<std::string, entry_ptr, std::less<>> entries_;
  // Strand only.
  bool started_ = false;
  bool stopping_ = false;
  std::vector<std::filesystem::path> dirs_;               // plugin directories of this start
  std::uint64_t generation_ = 0;                          // bumped by stop: old changes are dropped
  std::map<std::filesystem::path, change_kind> pending_;  // changes in the debounce window
  bool rescan_pending_ = false;
  bool flush_scheduled_ = false;
  std::optional<clock::time_point> debounce_started_;
  clock::time_point debounce_until_{};
  std::shared_ptr<asio::steady_timer> debounce_timer_;
  bool debouncing_ = false;
  struct liveness {
    explicit liveness(basic_hot_reloader* s) : self(s) {}
    std::mutex mu;
    basic_hot_reloader* self;
  };
  std::shared_ptr<liveness> alive_ = std::make_shared<liveness>(this);
};

} // namespace hotreload

#endif
