#ifndef HOTRELOAD_BASIC_HOT_RELOADER_HPP
#define HOTRELOAD_BASIC_HOT_RELOADER_HPP

#include <hotreload/abi.hpp>
#include <hotreload/acceptance.hpp>
#include <hotreload/config.hpp>
#include <hotreload/detail/async.hpp>
#include <hotreload/detail/engine_handle.hpp>
#include <hotreload/detail/policies.hpp>
#include <hotreload/detail/services.hpp>
#include <hotreload/error.hpp>
#include <hotreload/events.hpp>
#include <hotreload/loader/dll_loader.hpp>
#include <hotreload/loader/loader.hpp>
#include <hotreload/options.hpp>
#include <hotreload/plugin.hpp>
#include <hotreload/plugin_info.hpp>
#include <hotreload/plugin_ptr.hpp>
#include <hotreload/state/json_state.hpp>
#include <hotreload/state/state_store.hpp>
#include <hotreload/watcher/default_watcher.hpp>
#include <hotreload/watcher/manual_watcher.hpp>
#include <hotreload/watcher/watcher.hpp>

#include <boost/asio/co_spawn.hpp>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hotreload {

/// Loads plugins implementing `Interface` from shared libraries, reloads them as
/// transactions and hands out plugin_ptrs. Composed from three policies:
/// - Watcher (`watcher` concept): which file changes trigger reloads;
/// - Loader (`loader` concept): how a library file becomes mapped code;
/// - State (`state_store` concept): where state snapshots live between versions.
/// All its work runs on a strand of `Executor`; every member function is thread-safe.
/// Destroy it before its execution context, like any Asio I/O object.
///
/// This class is a thin front: the work is done by detail::engine and its parts, reached
/// through detail::engine_handle (see "Inside the reloader" in docs/guide.md).
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
      : ex_(ex), policies_(ex, opts), engine_(engine_executor(ex_), std::move(opts), policies_, traits()) {}

  /// Takes ready-made policy objects.
  basic_hot_reloader(Executor ex, options opts, Watcher w, Loader l, State s)
      : ex_(ex), policies_(ex, std::move(w), std::move(l), std::move(s)),
        engine_(engine_executor(ex_), std::move(opts), policies_, traits()) {}

  basic_hot_reloader(const basic_hot_reloader&) = delete;
  basic_hot_reloader& operator=(const basic_hot_reloader&) = delete;

  /// Without async_stop, instances are destroyed without teardown_async.
  ~basic_hot_reloader() = default;

  executor_type get_executor() const noexcept { return ex_; }
  const options& get_options() const noexcept { return engine_.opts(); }
  Watcher& watcher() noexcept { return policies_.watcher(); }
  Loader& loader() noexcept { return policies_.loader(); }
  State& state() noexcept { return policies_.state(); }

  /// Loads every plugin library found in options.plugin_dirs, then starts the watcher.
  /// Completes with the first failure, if any; the plugins that loaded serve regardless.
  template <class Token = asio::default_completion_token_t<Executor>>
  auto async_start(Token&& token = {}) {
    return run<>(std::forward<Token>(token), [e = &engine_] { return e->start(); });
  }

  /// Stops the watcher, then quiesces, snapshots and tears down every plugin.
  template <class Token = asio::default_completion_token_t<Executor>>
  auto async_stop(Token&& token = {}) {
    return run<>(std::forward<Token>(token), [e = &engine_] { return e->stop(); });
  }

  /// Reloads one plugin from its library file, as a transaction (see README).
  template <class Token = asio::default_completion_token_t<Executor>>
  auto async_reload_plugin(std::string name, Token&& token = {}) {
    return async_reload_plugins(std::vector<std::string>{std::move(name)}, std::forward<Token>(token));
  }

  /// Reloads several plugins as one batch: each once, in dependency order, independent ones
  /// concurrently, with every plugin that depends on them rebuilt against the new
  /// instances. A plugin whose new version fails rolls back, with the batch's plugins that
  /// depend on it; the others go ahead. Completes with the first failure.
  template <class Token = asio::default_completion_token_t<Executor>>
  auto async_reload_plugins(std::vector<std::string> names, Token&& token = {}) {
    return run<>(std::forward<Token>(token), [e = &engine_, names = std::move(names)] { return e->reload(names); });
  }

  /// Loads a plugin from a library file (or reloads it if that file is already loaded).
  /// Completes with the plugin's name.
  template <class Token = asio::default_completion_token_t<Executor>>
  auto async_load_plugin(std::filesystem::path file, Token&& token = {}) {
    return run<std::string>(std::forward<Token>(token),
                            [e = &engine_, file = std::move(file)] { return e->load_file(file); });
  }

  /// The plugin's serving version. Never a torn-down or half set-up one: during a reload
  /// the call waits and completes with the new version (or the old one after a rollback).
  template <class Token = asio::default_completion_token_t<Executor>>
  auto async_get(std::string_view name, Token&& token = {}) {
    return detail::initiate<pointer>(std::forward<Token>(token), ex_,
                                     [this, name = std::string(name)](detail::completion<pointer> done) mutable {
                                       if (auto p = try_get(name)) return done({}, std::move(p));
                                       auto c = std::make_shared<detail::completion<pointer>>(std::move(done));
                                       engine_.get(std::move(name), [c](error_info err, detail::lease_ptr l) {
                                         (*c)(std::move(err), l ? make_pointer(std::move(l)) : pointer());
                                       });
                                     });
  }

  /// The serving version, or an empty pointer if the plugin is unknown, disabled, being
  /// reloaded or failed. Never waits.
  pointer try_get(std::string_view name) const {
    auto l = engine_.try_get(name);
    return l ? make_pointer(std::move(l)) : pointer();
  }

  /// A disabled plugin stays loaded, keeps reloading, and is not handed out.
  error_code enable(std::string_view name) { return engine_.set_enabled(name, true); }
  error_code disable(std::string_view name) { return engine_.set_enabled(name, false); }

  std::vector<plugin_info> plugins() const { return engine_.infos(); }
  std::optional<plugin_info> info(std::string_view name) const { return engine_.info(name); }

  /// The host's last word on every new version: `check` runs on its instance after
  /// setup_async (first load) or on_reload_async (reload), before it serves, and may refuse
  /// it (see acceptance_check). Replaces the previous check; an empty one removes it.
  void set_acceptance_check(acceptance_check<Interface> check) {
    detail::acceptance_fn fn;
    if (check)
      fn = [check = std::move(check)](const plugin_metadata* old_v, const plugin_metadata& new_v, void* iface) {
        return check(candidate<Interface>{old_v, new_v, *static_cast<Interface*>(iface)});
      };
    engine_.set_acceptance_check(std::move(fn));
  }

  /// Calls `handler` for every event, on the reloader's strand. Returns an id for unsubscribe.
  std::size_t subscribe(event_handler handler) { return engine_.subscribe(std::move(handler)); }
  void unsubscribe(std::size_t id) { engine_.unsubscribe(id); }

private:
  // The services plugins use are created in the program's context first (services.hpp).
  static asio::any_io_executor engine_executor(const Executor& ex) {
    detail::preload_services(ex);
    return asio::any_io_executor(ex);
  }

  static detail::interface_traits traits() { return detail::interface_traits::of<Interface>(); }

  static pointer make_pointer(detail::lease_ptr&& l) {
    auto [iface, meta] = detail::engine_handle::contents(*l);
    return pointer(std::shared_ptr<Interface>(std::move(l), static_cast<Interface*>(iface)), meta);
  }

  // Runs `op` (an engine coroutine giving error_info, or result<T>) on the strand and
  // completes the caller's token with its outcome.
  template <class... T, class Token, class Op>
  auto run(Token&& token, Op op) {
    return detail::initiate<T...>(
        std::forward<Token>(token), ex_, [strand = engine_.strand(), op = std::move(op)](detail::completion<T...> done) mutable {
          asio::co_spawn(strand, op(), [done = std::move(done)](std::exception_ptr e, auto r) mutable {
            if constexpr (sizeof...(T) == 0) {
              done(e ? internal_error(e) : std::move(r));
            } else {
              done(e ? internal_error(e) : std::move(r.error), std::move(r.value));
            }
          });
        });
  }

  static error_info internal_error(const std::exception_ptr& e) {
    return detail::fail(errc::plugin_unavailable, {}, "internal error in hotreload: " + detail::describe(e));
  }

  Executor ex_;
  detail::policy_set<Executor, Watcher, Loader, State> policies_;
  detail::engine_handle engine_;
};

} // namespace hotreload

#endif
