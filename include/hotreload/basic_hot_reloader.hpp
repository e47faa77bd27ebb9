#ifndef HOTRELOAD_BASIC_HOT_RELOADER_HPP
#define HOTRELOAD_BASIC_HOT_RELOADER_HPP

#include <hotreload/abi.hpp>
#include <hotreload/config.hpp>
#include <hotreload/detail/async.hpp>
#include <hotreload/detail/async_mutex.hpp>
#include <hotreload/detail/files.hpp>
#include <hotreload/detail/keepalive_executor.hpp>
#include <hotreload/detail/semver.hpp>
#include <hotreload/detail/leak.hpp>
#include <hotreload/detail/services.hpp>
#include <hotreload/detail/trust.hpp>
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
#include <array>
#include <atomic>
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

namespace detail {
/// A process-wide unique id (never reused, unlike an address).
inline std::uint64_t next_object_id() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}
} // namespace detail

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
    changed();
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

  /// Reloads several plugins as one batch: each once, in dependency order, independent ones
  /// concurrently, with every plugin that depends on them rebuilt against the new
  /// instances. A plugin whose new version fails rolls back, with the batch's plugins that
  /// depend on it; the others go ahead. Completes with the first failure.
  template <class Token = asio::default_completion_token_t<Executor>>
  auto async_reload_plugins(std::vector<std::string> names, Token&& token = {}) {
    return run<>(std::forward<Token>(token), [this, names = std::move(names)]() { return reload_batch(names); });
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
    // Fast path: this thread's cache of recent answers, valid while nothing changed in this
    // reloader (publication_). A cached weak reference can only be locked while its version
    // still serves or is still held; a change bumps publication_, sending callers to the
    // slow path, which sees `quiescing` and refuses.
    auto& cache = try_get_cache();
    auto publication = publication_.load(std::memory_order_acquire);
    for (auto& c : cache.slots)
      if (c.owner == id_ && c.publication == publication && c.name == name) {
        if (auto l = c.lease.lock()) return make_pointer(std::move(l));
        break;
      }
    std::shared_ptr<lease_block> l;
    {
      std::lock_guard lk(mu_);
      auto it = entries_.find(name);
      if (it == entries_.end()) return {};
      auto& e = *it->second;
      if (!e.enabled || e.quiescing || !e.lease) return {};
      l = e.lease;
      auto& slot = cache.slots[cache.next++ % cache.slots.size()];
      slot = {id_, publication_.load(std::memory_order_relaxed), std::string(name), l};
    }
    return make_pointer(std::move(l));
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
    version_ptr waiting;                     // loaded, waiting for its dependencies to serve
    // Guarded by mu_ (source: written under it).
    std::shared_ptr<lease_block> lease;
    bool enabled = true;
    bool quiescing = true;
    plugin_info info;
  };
  using entry_ptr = std::shared_ptr<entry>;

  enum class hook { setup, teardown, on_reload, get_state, set_state, migrate_state };

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
  static pointer make_pointer(std::shared_ptr<lease_block>&& l) {
    auto* object = l->instance.get();
    auto* meta = &l->ver->meta;
    return pointer(std::shared_ptr<Interface>(std::move(l), object), meta);
  }

  // try_get's per-thread cache (one per Interface type, shared by its reloaders).
  struct try_get_slot {
    std::uint64_t owner = 0;      // id_ of the reloader
    std::uint64_t publication = 0; // its publication_ when cached
    std::string name;
    std::weak_ptr<lease_block> lease;
  };
  struct try_get_slots {
    std::array<try_get_slot, 4> slots;
    unsigned next = 0;
  };
  static try_get_slots& try_get_cache() {
    thread_local try_get_slots cache;
    return cache;
  }
  // Called, under mu_, after every change of what try_get would answer.
  void changed() { publication_.fetch_add(1, std::memory_order_release); }

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
  // A Loader with `async_load` (dll_loader: its probe) does not block the strand meanwhile.
  awaitable<version_ptr> load_version(std::filesystem::path file, error_info& err) {
    if ((err = detail::check_trust(file, plugin_dirs(), opts_.trust))) co_return nullptr;
    loaded_library lib;
    if constexpr (requires(Loader& l) { l.async_load(file); }) {
      auto loaded = co_await loader_.value.async_load(file);
      lib = std::move(loaded.first);
      err = std::move(loaded.second);
    } else {
      lib = loader_.value.load(file, err);
    }
    if (err) co_return nullptr;
    static const abi_tag ours = make_abi_tag<Interface>();
    if (auto why = abi_mismatch(ours, *lib.tag); !why.empty()) {
      err = fail({}, errc::abi_mismatch, file.string() + " was refused: " + why);
      co_return nullptr;
    }
    plugin_metadata meta;
    if ((err = parse_metadata(lib.metadata, file.string(), meta))) co_return nullptr;
    // The last reference may drop anywhere, even inside plugin code still on the stack (a
    // plugin's completion handler being destroyed), so the unmapping always runs later, in a
    // handler of our own on the strand.
    ++hub_->live_versions;
    co_return version_ptr(new version{std::move(lib), std::move(meta)}, [weak = std::weak_ptr<hub>(hub_)](const version* v) {
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

  // load_version of each file, concurrently (their probes run side by side).
  awaitable<std::vector<std::pair<version_ptr, error_info>>> load_versions(const std::vector<std::filesystem::path>& files) {
    std::vector<std::pair<version_ptr, error_info>> loaded(files.size());
    co_await run_dag(std::vector<std::vector<std::size_t>>(files.size()), [&](std::size_t i) -> awaitable<void> {
      loaded[i].first = co_await load_version(files[i], loaded[i].second);
    });
    co_return loaded;
  }

  // Step 5: a new instance from `v`. Its deleter runs the plugin's destructor and then
  // releases the version, so the code outlives the object.
  std::shared_ptr<Interface> construct(const version_ptr& v, error_info& err) {
    const auto& name = v->meta.name;
    auto cfg = opts_.plugin_config.if_contains(name);
    plugin_context ctx(name, asio::any_io_executor(detail::keepalive_executor<Executor>(ex_, v)),
                       plugin_logger(hub_->log, name),
                       cfg && cfg->is_object() ? cfg->get_object() : boost::json::object(), opts_.shared,
                       resolver_for(v));
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
    case hook::set_state:
    case hook::migrate_state: return t.set_state;
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
    case hook::migrate_state: return "migrate_state";
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
    case hook::migrate_state: return errc::state_migration_failed;
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
  static awaitable<void> call_migrate_state(std::shared_ptr<Interface> p, std::int64_t from,
                                            std::shared_ptr<boost::json::value> state) {
    *state = co_await p->migrate_state(from, std::move(*state));
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
        std::int64_t from = 1;
        if (auto sv = snapshot->if_contains("state_version"); sv && sv->is_int64()) from = sv->get_int64();
        if (from != v->meta.state_version) {
          auto migrated = std::make_shared<boost::json::value>(std::move(custom));
          err = co_await run_hook(v, hook::migrate_state, call_migrate_state(inst, from, migrated));
          if (err.code == errc::state_migration_failed)
            err.message = "plugin '" + e.name + "' " + v->meta.version + " (state_version " +
                          std::to_string(v->meta.state_version) + ") was given a state of state_version " +
                          std::to_string(from) + " and " + err.message.substr(err.message.find("migrate_state")) +
                          "; implement migrate_state(from_version, state) to convert it, or keep the state_version";
          if (err) co_return nullptr;
          custom = std::move(*migrated);
          log(log_level::info, e.name,
              "Migrated state of plugin " + e.name + " from state_version " + std::to_string(from) + " to " +
                  std::to_string(v->meta.state_version));
        }
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
      changed();
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
      changed();
      e.info.serving = false;
      e.info.version.clear();
      e.info.last_error = err;
      if (e.info.last_error->plugin.empty()) e.info.last_error->plugin = e.name;
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
      changed();
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
      changed();
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
      changed();
    }
    release_waiters(e, {});
  }

  void record_error(entry& e, const error_info& err) {
    std::lock_guard lk(mu_);
    e.info.last_error = err;
    if (e.info.last_error->plugin.empty()) e.info.last_error->plugin = e.name;
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
      std::string why;
      if (!std::filesystem::is_directory(dir, ec))
        why = "does not exist or is not a directory";
      else if (auto rec = detail::for_each_file(dir, [&](const std::filesystem::path& f) {
                 if (!ignored_because(f)) files.push_back(f);
               }))
        why = "cannot be read (" + rec.message() + ")";
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
    auto [first, names] = co_await load_files(std::move(files));
    // Missing directories too (with allow_missing_dirs): watchers pick them up once they exist.
    const std::vector<std::filesystem::path>& watched = dirs_;
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
    std::vector<std::filesystem::path> files;
    for (auto& [path, kind] : changes) {
      if (gen != generation_) co_return;
      if (kind == change_kind::removed && !detail::stamp_of(path)) co_await removed(path);
      else files.push_back(path);
    }
    co_await load_changed(std::move(files));
  }

  // Library files that may be new or changed, as one batch: new ones load, changed ones
  // reload their plugin; a file that holds exactly what was last loaded (or tried) from it
  // is left alone.
  awaitable<void> load_changed(std::vector<std::filesystem::path> files) {
    std::erase_if(files, [&](const std::filesystem::path& f) {
      auto e = find_by_source(f);
      return e && e->tried && detail::stamp_of(f) == e->tried;
    });
    if (files.empty()) co_return;
    if (debug_on()) {
      std::string list;
      for (auto& f : files) {
        auto e = find_by_source(f);
        list += (list.empty() ? "" : ", ") + (e ? e->name : f.stem().string());
      }
      log(log_level::debug, {}, "Affected plugins: [" + list + "]");
    }
    co_await load_files(std::move(files));
  }

  // Every plugin directory again: new libraries load, changed ones reload, vanished ones
  // are handled as removed. For lost events and for the start-up window.
  awaitable<void> rescan() {
    std::vector<std::filesystem::path> files;
    if (auto err = find_libraries(files)) log(log_level::warning, {}, err.message);
    co_await load_changed(std::move(files));
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
    if (e->removed || detail::stamp_of(e->source)) co_return; // stopped meanwhile, or back already
    log(log_level::info, e->name, "Plugin library removed: " + file.string() + "; unloading plugin '" + e->name + "'");
    // Its dependents cannot serve without it: they go first.
    std::vector<entry_ptr> victims{e};
    for (std::size_t i = 0; i < victims.size(); ++i) {
      std::lock_guard lk(mu_);
      for (auto& [n, other] : entries_)
        if (other->ver && std::find(victims.begin(), victims.end(), other) == victims.end() &&
            std::any_of(other->ver->meta.depends_on.begin(), other->ver->meta.depends_on.end(),
                        [&](auto& d) { return d.name == victims[i]->name; }))
          victims.push_back(other);
    }
    for (auto& v : dependents_first(std::move(victims))) {
      co_await v->lock.lock(strand_);
      detail::unlock_on_exit unlock{v->lock};
      if (v->removed) continue;
      co_await stop_locked(*v);
      std::lock_guard lk(mu_);
      entries_.erase(v->name);
      changed();
    }
  }

  // `all`, ordered so that every plugin comes before the plugins it depends on.
  static std::vector<entry_ptr> dependents_first(std::vector<entry_ptr> all) {
    std::vector<std::vector<std::size_t>> preds(all.size());
    for (std::size_t i = 0; i < all.size(); ++i)
      if (all[i]->ver)
        for (auto& d : all[i]->ver->meta.depends_on)
          for (std::size_t j = 0; j < all.size(); ++j)
            if (all[j]->name == d.name) preds[i].push_back(j);
    auto order = topological(preds);
    std::vector<entry_ptr> out;
    for (auto it = order.rbegin(); it != order.rend(); ++it) out.push_back(all[*it]);
    return out;
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
    std::vector<std::filesystem::path> files{file};
    auto [err, names] = co_await load_files(std::move(files));
    co_return std::pair{err, names.empty() ? std::string() : names.front()};
  }

  // Loads library files: each new plugin is added, then all of them start in dependency
  // order (independent ones concurrently); files of loaded plugins reload them as one batch.
  // Completes with the first failure and the names of the plugins concerned.
  awaitable<std::pair<error_info, std::vector<std::string>>> load_files(std::vector<std::filesystem::path> files) {
    auto t0 = clock::now();
    error_info first;
    std::vector<std::string> names, reloads;
    std::vector<std::pair<entry_ptr, version_ptr>> fresh;
    std::vector<std::filesystem::path> new_files;
    std::vector<std::optional<detail::file_stamp>> stamps;
    for (auto& file : files)
      if (auto existing = find_by_source(file)) {
        reloads.push_back(existing->name);
      } else {
        new_files.push_back(file);
        stamps.push_back(detail::stamp_of(file));
      }
    auto loaded = co_await load_versions(new_files);
    for (std::size_t i = 0; i < new_files.size(); ++i) {
      const auto& file = new_files[i];
      auto tried = stamps[i];
      auto v = std::move(loaded[i].first);
      auto err = std::move(loaded[i].second);
      // The load may have waited (a probe): meanwhile a stop may have begun, or another
      // call may have loaded this very file.
      if (v && stopping_) err = fail(v->meta.name, errc::stopping, "not loaded: the reloader is stopping");
      if (v && !err && find_by_source(file)) continue;
      if (err) v = nullptr;
      if (!v) {
        err.plugin = file.stem().string();
        log(log_level::error, err.plugin, "Failed to load plugin library " + file.string() + ": " + err.message);
        emit(event_kind::load_failed, err.plugin, nullptr, nullptr, clock::now() - t0, err);
        if (!first) first = err;
        continue;
      }
      const auto name = v->meta.name;
      names.push_back(name);
      auto e = std::make_shared<entry>();
      e->name = name;
      e->source = file;
      e->info.name = name;
      e->info.path = file;
      e->tried = tried;
      bool renamed = false;
      {
        std::lock_guard lk(mu_);
        auto [it, inserted] = entries_.try_emplace(name, e);
        if (!inserted && !detail::stamp_of(it->second->source)) {
          renamed = true; // its old file is gone: the same plugin under a new file name
          it->second->source = file;
          it->second->info.path = file;
        } else if (!inserted) {
          err = fail(name, errc::duplicate_plugin,
                     "two libraries declare plugin '" + name + "': " + it->second->source.string() + " and " +
                         file.string() + "; the second was not loaded; give one of them another \"name\"");
        }
      }
      if (err) {
        log(log_level::error, name, err.message);
        emit(event_kind::load_failed, name, nullptr, v, clock::now() - t0, err);
        if (!first) first = err;
      } else if (renamed) {
        reloads.push_back(name);
      } else {
        fresh.emplace_back(std::move(e), std::move(v));
      }
    }
    if (auto err = co_await start_fresh(std::move(fresh), t0); err && !first) first = err;
    if (!reloads.empty()) {
      names.insert(names.end(), reloads.begin(), reloads.end());
      if (auto err = co_await reload_batch(std::move(reloads)); err && !first) first = err;
    }
    co_await retry_waiting();
    co_return std::pair{first, names};
  }

  // Starts newly added plugins: dependencies first, independent plugins concurrently. A
  // plugin whose dependencies are missing, unsatisfied, cyclic or failed does not start.
  awaitable<error_info> start_fresh(std::vector<std::pair<entry_ptr, version_ptr>> fresh, clock::time_point t0) {
    error_info first;
    if (fresh.empty()) co_return first;
    auto versions = serving_versions();
    std::map<std::string, std::size_t, std::less<>> index;
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      versions[fresh[i].first->name] = fresh[i].second;
      index[fresh[i].first->name] = i;
    }
    std::vector<std::optional<error_info>> problem(fresh.size());
    for (std::size_t i = 0; i < fresh.size(); ++i) problem[i] = dependency_problem(fresh[i].second, versions);
    if (auto cycle = find_cycle(versions); !cycle.empty())
      for (std::size_t i = 0; i < fresh.size(); ++i)
        if (cycle.find(fresh[i].first->name + " ->") != std::string::npos && !problem[i])
          problem[i] = fail(fresh[i].first->name, errc::dependency_cycle,
                            "plugins depend on each other in a cycle: " + cycle + "; remove one of these \"depends_on\" entries");
    std::vector<std::vector<std::size_t>> preds(fresh.size());
    for (std::size_t i = 0; i < fresh.size(); ++i)
      if (!problem[i])
        for (auto& d : fresh[i].second->meta.depends_on)
          if (auto it = index.find(d.name); it != index.end()) preds[i].push_back(it->second);
    std::vector<bool> down(fresh.size());
    for (auto& [e, v] : fresh) co_await e->lock.lock(strand_); // new entries: free at once
    co_await run_dag(preds, [&](std::size_t i) -> awaitable<void> {
      auto& [e, v] = fresh[i];
      std::optional<error_info> why = problem[i];
      for (auto p : preds[i])
        if (down[p] && !why)
          why = fail(e->name, errc::missing_dependency,
                     "plugin '" + e->name + "' cannot start: its dependency '" + fresh[p].first->name + "' did not start");
      error_info err;
      if (why) {
        err = *why;
        log(log_level::error, e->name, "Failed to start plugin: " + e->name + ": " + err.message);
        mark_unavailable(*e, err);
        if (err.code != errc::dependency_cycle) e->waiting = v; // starts when its dependencies serve
        emit(event_kind::load_failed, e->name, nullptr, v, clock::now() - t0, err);
      } else {
        err = co_await start_locked(*e, v, t0);
      }
      if (err) {
        down[i] = true;
        if (!first) first = err;
      }
    });
    for (auto& [e, v] : fresh) e->lock.unlock();
    co_return first;
  }

  // Plugins that could not start for want of a dependency start once it serves.
  awaitable<void> retry_waiting() {
    for (bool again = true; again;) {
      again = false;
      auto versions = serving_versions();
      std::vector<entry_ptr> waiting;
      {
        std::lock_guard lk(mu_);
        for (auto& [name, e] : entries_)
          if (e->waiting && !e->removed) waiting.push_back(e);
      }
      for (auto& e : waiting) {
        if (dependency_problem(e->waiting, versions)) continue;
        co_await e->lock.lock(strand_);
        detail::unlock_on_exit unlock{e->lock};
        if (!e->waiting || e->instance || !started_ || stopping_) continue;
        auto v = std::move(e->waiting);
        e->waiting.reset();
        log(log_level::info, e->name, "Dependencies of plugin " + e->name + " are there now; starting it");
        if (!co_await start_locked(*e, std::move(v), clock::now())) again = true;
      }
    }
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
        changed();
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
    std::vector<std::string> names{std::move(name)}; // not in the co_await expression: g++ 12
    co_return co_await reload_batch(std::move(names));
  }

  // ---- dependencies -----------------------------------------------------------------

  // Runs fn(i) for every i < n after fn(p) finished for every p in preds[i]; nodes with no
  // path between them run concurrently on the strand (their hooks overlap in time).
  awaitable<void> run_dag(const std::vector<std::vector<std::size_t>>& preds,
                          std::function<awaitable<void>(std::size_t)> fn) {
    const std::size_t n = preds.size();
    if (n == 0) co_return;
    struct state {
      explicit state(const strand_type& s, std::size_t n) : done(n), all(s, asio::steady_timer::time_point::max()) {
        for (auto& d : done) d.timer = std::make_shared<asio::steady_timer>(s, asio::steady_timer::time_point::max());
      }
      struct slot {
        bool finished = false;
        std::shared_ptr<asio::steady_timer> timer;
      };
      std::vector<slot> done;
      asio::steady_timer all;
      std::size_t remaining = 0;
      std::exception_ptr error;
    };
    auto st = std::make_shared<state>(strand_, n);
    st->remaining = n;
    for (std::size_t i = 0; i < n; ++i)
      asio::co_spawn(
          strand_,
          [st, &preds, &fn, i]() -> awaitable<void> {
            for (auto p : preds[i])
              while (!st->done[p].finished) co_await st->done[p].timer->async_wait(asio::as_tuple(asio::use_awaitable));
            co_await fn(i);
          },
          [st, i](std::exception_ptr e) {
            if (e && !st->error) st->error = e;
            st->done[i].finished = true;
            st->done[i].timer->cancel();
            if (--st->remaining == 0) st->all.cancel();
          });
    if (st->remaining > 0) co_await st->all.async_wait(asio::as_tuple(asio::use_awaitable));
    if (st->error) std::rethrow_exception(st->error);
  }

  // Why `v` cannot serve next to `versions` (name -> the version that will serve), or nothing.
  std::optional<error_info> dependency_problem(const version_ptr& v,
                                               const std::map<std::string, version_ptr, std::less<>>& versions) const {
    const auto& name = v->meta.name;
    for (auto& d : v->meta.depends_on) {
      if (d.name == name)
        return fail(name, errc::dependency_cycle, "plugin '" + name + "' depends on itself; remove it from \"depends_on\"");
      auto it = versions.find(d.name);
      if (it == versions.end() || !it->second)
        return fail(name, errc::missing_dependency,
                    "plugin '" + name + "' depends on '" + d.name + "', which is not loaded; add its library to a plugin "
                    "directory (or remove it from \"depends_on\")");
      if (d.requirement.empty()) continue;
      auto ok = detail::satisfies(it->second->meta.version, d.requirement);
      if (!ok)
        return fail(name, errc::dependency_version,
                    "plugin '" + name + "' requires '" + d.name + " " + d.requirement + "', which cannot be compared with version '" +
                        it->second->meta.version + "'; use versions like 1.2.3 and requirements like >=1.2");
      if (!*ok)
        return fail(name, errc::dependency_version,
                    "plugin '" + name + "' requires '" + d.name + " " + d.requirement + "' but " + d.name + " is " +
                        it->second->meta.version + "; load a matching version of one of them");
    }
    return std::nullopt;
  }

  // The plugins of `versions` on a dependency cycle, as "a -> b -> a", or "".
  static std::string find_cycle(const std::map<std::string, version_ptr, std::less<>>& versions) {
    std::map<std::string, int, std::less<>> color; // 0 new, 1 on the path, 2 done
    std::vector<std::string> path;
    std::string found;
    std::function<bool(const std::string&)> visit = [&](const std::string& n) {
      color[n] = 1;
      path.push_back(n);
      auto it = versions.find(n);
      if (it != versions.end() && it->second)
        for (auto& d : it->second->meta.depends_on) {
          if (!versions.contains(d.name) || d.name == n) continue;
          if (color[d.name] == 1) {
            auto from = std::find(path.begin(), path.end(), d.name);
            for (auto p = from; p != path.end(); ++p) found += *p + " -> ";
            found += d.name;
            return true;
          }
          if (color[d.name] == 0 && visit(d.name)) return true;
        }
      path.pop_back();
      color[n] = 2;
      return false;
    };
    for (auto& [n, v] : versions)
      if (color[n] == 0 && visit(n)) break;
    return found;
  }

  // The serving version of every plugin, by name.
  std::map<std::string, version_ptr, std::less<>> serving_versions() const {
    std::map<std::string, version_ptr, std::less<>> out;
    std::lock_guard lk(mu_);
    for (auto& [name, e] : entries_) out[name] = e->ver;
    return out;
  }

  // What plugin_context::get asks. Callable from any thread, for as long as the plugin
  // lives: it reaches the reloader only while the reloader exists. The handle it returns is
  // not a lease, so a dependent holding it does not hold up its dependency's reloads.
  dependency_resolver resolver_for(const version_ptr& v) {
    return [alive = alive_, declared = v->meta.depends_on, who = v->meta.name](std::string_view name) -> plugin_ptr<plugin> {
      std::lock_guard guard(alive->mu);
      auto* self = alive->self;
      if (!self) return {};
      if (std::none_of(declared.begin(), declared.end(), [&](auto& d) { return d.name == name; })) {
        self->log(log_level::error, who,
                  "plugin '" + who + "' asked for '" + std::string(name) + "', which it does not declare in \"depends_on\"");
        return {};
      }
      std::lock_guard lk(self->mu_);
      auto it = self->entries_.find(name);
      if (it == self->entries_.end() || !it->second->lease) return {};
      auto& l = it->second->lease;
      return plugin_ptr<plugin>(std::shared_ptr<plugin>(l->instance, static_cast<plugin*>(l->instance.get())), &l->ver->meta);
    };
  }

  // ---- the reload transaction, for a set of plugins ---------------------------------

  // One plugin in a batch.
  struct node {
    node(entry_ptr en, bool req, version_ptr o, version_ptr n)
        : e(std::move(en)), requested(req), old_v(std::move(o)), new_v(std::move(n)) {}
    entry_ptr e;
    bool requested = false;   // its library is reloaded; else it is rebuilt on its own version
    version_ptr old_v, new_v; // new_v == old_v: rebuilt against new dependencies
    std::shared_ptr<Interface> old_instance;
    std::optional<boost::json::object> snapshot;
    bool quiesced = false;
    bool back = false;        // brought up on old_v: its own new version or a dependency failed
    bool down = false;        // could not be brought up at all
    std::vector<std::size_t> deps, dependents;
  };

  // Reloads `names` as one transaction, with every plugin that depends on them (they are
  // rebuilt, on their own versions, against the new instances). Per plugin: a plugin whose
  // new version fails rolls back to its old version, and so do the plugins of the batch that
  // depend on it; the others go ahead. Completes with the first failure.
  awaitable<error_info> reload_batch(std::vector<std::string> names) {
    auto t0 = clock::now();
    error_info first;
    auto note = [&](const error_info& err) {
      if (err && !first) first = err;
    };
    // The batch: the named plugins and, transitively, their dependents.
    std::map<std::string, entry_ptr, std::less<>> all;
    {
      std::lock_guard lk(mu_);
      for (auto& [n, e] : entries_) all[n] = e;
    }
    std::map<std::string, bool, std::less<>> members; // name -> requested
    std::vector<std::string> queue;
    for (auto& n : names) {
      if (!all.contains(n)) {
        note(fail(n, errc::plugin_not_found,
                  "no plugin named '" + n + "' is loaded; check its metadata name and the plugin directories"));
        continue;
      }
      members[n] = true;
      queue.push_back(n);
    }
    for (std::size_t i = 0; i < queue.size(); ++i)
      for (auto& [n, e] : all)
        if (e->ver && !members.contains(n) &&
            std::any_of(e->ver->meta.depends_on.begin(), e->ver->meta.depends_on.end(),
                        [&](auto& d) { return d.name == queue[i]; })) {
          members[n] = false;
          queue.push_back(n);
        }
    if (members.empty()) co_return first;
    // Locked in name order, so that concurrent batches cannot deadlock.
    std::vector<entry_ptr> locked;
    struct unlock_all {
      std::vector<entry_ptr>& v;
      ~unlock_all() {
        for (auto& e : v) e->lock.unlock();
      }
    } unlock{locked};
    for (auto& [n, req] : members) {
      co_await all[n]->lock.lock(strand_);
      locked.push_back(all[n]);
    }
    if (!started_ || stopping_)
      co_return fail(names.empty() ? std::string() : names.front(), errc::stopping,
                     "not reloaded: the reloader is stopping");

    // 1. Every requested library, validated while the old versions serve untouched.
    std::vector<entry_ptr> requested;
    std::vector<std::filesystem::path> sources;
    for (auto& [n, req] : members)
      if (req && !all[n]->removed) {
        auto& e = all[n];
        log(log_level::info, n, "Reloading plugin: " + n);
        emit(event_kind::reload_started, n, e->ver, nullptr);
        e->tried = detail::stamp_of(e->source);
        requested.push_back(e);
        sources.push_back(e->source);
      }
    auto loaded = co_await load_versions(sources);
    std::vector<node> nodes;
    std::vector<std::pair<entry_ptr, version_ptr>> restarts; // failed plugins: start afresh
    for (auto& [n, req] : members) {
      auto& e = all[n];
      if (e->removed) continue;
      if (!req) {
        if (e->instance) nodes.emplace_back(e, false, e->ver, e->ver);
        continue;
      }
      auto i = static_cast<std::size_t>(std::find(requested.begin(), requested.end(), e) - requested.begin());
      auto nv = std::move(loaded[i].first);
      auto err = std::move(loaded[i].second);
      if (nv && nv->meta.name != n)
        err = fail(n, errc::name_mismatch,
                   e->source.string() + " now declares plugin '" + nv->meta.name + "', not '" + n +
                       "'; a plugin's name must not change across versions");
      if (err) {
        note(reload_failed(*e, err, nv, t0));
        if (e->instance) nodes.emplace_back(e, false, e->ver, e->ver); // still rebuilt if a dependency changes
        continue;
      }
      if (!e->instance) {
        restarts.emplace_back(e, std::move(nv));
        continue;
      }
      step(*e, reload_step::library_loaded, e->ver, nv, t0, "Loaded new library " + nv->meta.version);
      nodes.emplace_back(e, true, e->ver, std::move(nv));
    }
    // Dependencies of the new versions: what cannot serve next to the others keeps its old
    // version (until nothing changes any more).
    for (bool changed = true; changed;) {
      changed = false;
      auto versions = serving_versions();
      for (auto& nd : nodes) versions[nd.e->name] = nd.new_v;
      for (auto& nd : nodes) {
        if (nd.new_v == nd.old_v) continue;
        auto problem = dependency_problem(nd.new_v, versions);
        if (!problem)
          for (auto& [n, v] : versions) // would the new version break a plugin that depends on it?
            if (v && v != nd.new_v &&
                std::any_of(v->meta.depends_on.begin(), v->meta.depends_on.end(),
                            [&](auto& d) { return d.name == nd.e->name; }))
              if (auto p = dependency_problem(v, versions); p && p->code == errc::dependency_version) {
                problem = *p;
                problem->plugin = nd.e->name;
                problem->message = nd.e->name + " " + nd.new_v->meta.version + " was refused: " + p->message;
              }
        if (!problem)
          if (auto cycle = find_cycle(versions); !cycle.empty())
            problem = fail(nd.e->name, errc::dependency_cycle,
                           "plugin '" + nd.e->name + "' " + nd.new_v->meta.version + " would close a dependency cycle: " + cycle +
                               "; remove one of these \"depends_on\" entries");
        if (problem) {
          note(reload_failed(*nd.e, *problem, nd.new_v, t0));
          nd.new_v = nd.old_v;
          nd.requested = false;
          changed = true;
          break;
        }
      }
    }
    // Only what changed, and what depends on it, goes through the transaction.
    {
      std::map<std::string, std::size_t, std::less<>> index;
      for (std::size_t i = 0; i < nodes.size(); ++i) index[nodes[i].e->name] = i;
      std::vector<bool> affected(nodes.size());
      for (bool grew = true; grew;) {
        grew = false;
        for (std::size_t i = 0; i < nodes.size(); ++i) {
          if (affected[i]) continue;
          bool a = nodes[i].new_v != nodes[i].old_v;
          for (auto& d : nodes[i].new_v->meta.depends_on)
            if (auto it = index.find(d.name); it != index.end() && affected[it->second]) a = true;
          if (a) affected[i] = grew = true;
        }
      }
      std::vector<node> kept;
      for (std::size_t i = 0; i < nodes.size(); ++i)
        if (affected[i]) kept.push_back(std::move(nodes[i]));
      nodes = std::move(kept);
      index.clear();
      for (std::size_t i = 0; i < nodes.size(); ++i) index[nodes[i].e->name] = i;
      for (std::size_t i = 0; i < nodes.size(); ++i)
        for (auto& d : nodes[i].new_v->meta.depends_on)
          if (auto it = index.find(d.name); it != index.end()) {
            nodes[i].deps.push_back(it->second);
            nodes[it->second].dependents.push_back(i);
          }
    }
    std::vector<std::vector<std::size_t>> up(nodes.size()), down(nodes.size());
    for (std::size_t i = 0; i < nodes.size(); ++i) {
      up[i] = nodes[i].deps;
      down[i] = nodes[i].dependents;
    }

    // 2. Quiesce, dependents first. 3. Snapshot. Any failure here: everything serves on.
    auto abort = [&](const error_info& err) {
      for (auto& nd : nodes)
        if (nd.quiesced) resume_old(*nd.e);
      for (auto& nd : nodes)
        if (nd.requested) note(reload_failed(*nd.e, err, nd.new_v, t0));
      note(err);
    };
    std::vector<std::size_t> order = topological(up);
    error_info err;
    for (auto it = order.rbegin(); it != order.rend() && !err; ++it) {
      auto& nd = nodes[*it];
      if ((err = co_await quiesce(*nd.e, true))) break;
      nd.quiesced = true;
      step(*nd.e, reload_step::quiesced, nd.old_v, nd.new_v, t0, "Quiesced");
    }
    for (auto i : order) {
      if (err) break;
      auto& nd = nodes[i];
      boost::json::object snapshot;
      {
        std::lock_guard lk(mu_);
        snapshot["enabled"] = nd.e->enabled;
      }
      snapshot["state_version"] = nd.old_v->meta.state_version;
      if constexpr (State::preserves_state) {
        auto out = std::make_shared<boost::json::value>();
        if ((err = co_await run_hook(nd.old_v, hook::get_state, call_get_state(nd.e->instance, out)))) break;
        snapshot["custom"] = std::move(*out);
        if ((err = state_.value.save(nd.e->name, snapshot))) {
          err.plugin = nd.e->name;
          break;
        }
        step(*nd.e, reload_step::state_saved, nd.old_v, nd.new_v, t0, "Saved state");
      }
      nd.snapshot = std::move(snapshot);
    }
    if (err) {
      abort(err);
      for (auto& [e, v] : restarts) note(co_await restart_locked(*e, v, t0));
      co_return first;
    }

    // 4. Teardown, dependents first. A failure is reported; the old instance goes regardless.
    for (auto& nd : nodes) nd.old_instance = nd.e->instance;
    std::function<awaitable<void>(std::size_t)> tear_down = [&](std::size_t i) -> awaitable<void> {
      auto& nd = nodes[i];
      if (debug_on()) log(log_level::debug, nd.e->name, "Calling teardown_async for plugin: " + nd.e->name);
      if (auto terr = co_await run_hook(nd.old_v, hook::teardown, call_hook(nd.old_instance, hook::teardown))) {
        log(log_level::warning, nd.e->name, terr.message);
        record_error(*nd.e, terr);
      }
      step(*nd.e, reload_step::torn_down, nd.old_v, nd.new_v, t0, "Tore down old instance");
      if (nd.e->instance == nd.old_instance) nd.e->instance.reset(); // not yet replaced (overlap)
    };

    // 5-8. New instances, dependencies first; independent plugins concurrently.
    std::function<awaitable<void>(std::size_t)> bring_up_new = [&](std::size_t i) -> awaitable<void> {
      auto& nd = nodes[i];
      auto& e = *nd.e;
      for (auto d : nd.deps)
        if (nodes[d].down) {
          auto derr = fail(e.name, errc::missing_dependency,
                           "plugin '" + e.name + "' cannot start: its dependency '" + nodes[d].e->name + "' is unavailable");
          log(log_level::error, e.name, derr.message);
          nd.down = true;
          mark_unavailable(e, derr);
          emit(event_kind::reload_failed, e.name, nd.old_v, nullptr, clock::now() - t0, derr);
          note(derr);
          co_return;
        }
      error_info berr;
      auto v = nd.back ? nd.old_v : nd.new_v;
      auto inst = co_await bring_up(e, v, nd.snapshot, false, nd.old_v, t0, berr);
      if (inst) {
        e.ver = v;
        e.instance = std::move(inst);
        publish(e, nd.requested && !nd.back);
        step(e, reload_step::published, nd.old_v, v, t0, "Published new instance");
        if (nd.requested && !nd.back) {
          log(log_level::info, e.name, "Successfully reloaded plugin: " + e.name + " (" + ms(clock::now() - t0) + ")");
          emit(event_kind::reloaded, e.name, nd.old_v, v, clock::now() - t0);
        } else if (!nd.requested) {
          log(log_level::info, e.name, "Rebuilt plugin: " + e.name + " (a dependency was reloaded)");
        }
        co_return;
      }
      if (v != nd.old_v || !nd.requested) note(reload_failed(e, berr, v, t0));
      error_info rerr = berr;
      if (v != nd.old_v) {
        // Roll back this plugin, and keep the old versions of the batch's plugins above it.
        std::function<void(std::size_t)> back = [&](std::size_t j) {
          nodes[j].back = true;
          for (auto k : nodes[j].dependents) back(k);
        };
        back(i);
        rerr = {};
        if (auto rinst = co_await bring_up(e, nd.old_v, nd.snapshot, false, nd.old_v, t0, rerr)) {
          e.ver = nd.old_v;
          e.instance = std::move(rinst);
          publish(e, false);
          log(log_level::warning, e.name,
              "Rolled back plugin: " + e.name + " to " + nd.old_v->meta.version + " (" + ms(clock::now() - t0) + ")");
          emit(event_kind::rolled_back, e.name, nd.old_v, nd.old_v, clock::now() - t0, berr);
          co_return;
        }
      }
      auto total = fail(e.name, errc::rollback_failed,
                        berr.message + (v != nd.old_v ? "; then the rollback to " + nd.old_v->meta.version +
                                                            " failed too: " + rerr.message
                                                      : std::string()) +
                            "; the plugin is unavailable until a working version is loaded");
      log(log_level::error, e.name, total.message);
      nd.down = true;
      mark_unavailable(e, total);
      emit(event_kind::reload_failed, e.name, nd.old_v, nullptr, clock::now() - t0, total);
      note(total);
    };

    // Teardown, then bring-up; or both at once with options.overlap_teardown.
    std::vector<std::vector<std::size_t>> phases(2);
    if (!opts_.overlap_teardown) phases[1].push_back(0);
    co_await run_dag(phases, [&](std::size_t k) { return k == 0 ? run_dag(down, tear_down) : run_dag(up, bring_up_new); });

    // The old instances go, dependents first; each library unloads once its last handle is gone.
    for (auto it = order.rbegin(); it != order.rend(); ++it) nodes[*it].old_instance.reset();
    for (auto& [e, v] : restarts) note(co_await restart_locked(*e, v, t0));
    co_return first;
  }

  // A plugin that had failed, given a new version: it starts if its dependencies serve.
  awaitable<error_info> restart_locked(entry& e, version_ptr v, clock::time_point t0) {
    if (auto problem = dependency_problem(v, serving_versions())) {
      log(log_level::error, e.name, "Failed to start plugin: " + e.name + ": " + problem->message);
      mark_unavailable(e, *problem);
      if (problem->code != errc::dependency_cycle) e.waiting = std::move(v);
      emit(event_kind::load_failed, e.name, nullptr, e.waiting, clock::now() - t0, *problem);
      co_return *problem;
    }
    e.waiting.reset();
    co_return co_await start_locked(e, std::move(v), t0);
  }

  error_info reload_failed(entry& e, const error_info& err, const version_ptr& nv, clock::time_point t0) {
    record_error(e, err);
    log(log_level::error, e.name, "Reload failed for plugin: " + e.name + ": " + err.message);
    emit(event_kind::reload_failed, e.name, e.ver, nv, clock::now() - t0, err);
    return err;
  }

  // A topological order of a DAG given as predecessor lists (ties in index order).
  static std::vector<std::size_t> topological(const std::vector<std::vector<std::size_t>>& preds) {
    std::vector<std::size_t> order;
    std::vector<int> state(preds.size());
    std::function<void(std::size_t)> visit = [&](std::size_t i) {
      if (state[i]) return;
      state[i] = 1;
      for (auto p : preds[i]) visit(p);
      order.push_back(i);
    };
    for (std::size_t i = 0; i < preds.size(); ++i) visit(i);
    return order;
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
    // Dependents stop before their dependencies.
    std::vector<entry_ptr> all;
    {
      std::lock_guard lk(mu_);
      for (auto& [name, e] : entries_) all.push_back(e);
    }
    for (auto& e : dependents_first(std::move(all))) {
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
      changed();
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
      changed();
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
  std::atomic<std::uint64_t> publication_{1}; // bumped by changed(): try_get's cache key
  const std::uint64_t id_ = detail::next_object_id();
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
