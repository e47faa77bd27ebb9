#ifndef HOTRELOAD_DETAIL_POLICIES_HPP
#define HOTRELOAD_DETAIL_POLICIES_HPP

// What the engine needs of the three policies and of the host's interface, behind one
// virtual interface: the engine is plain code, compiled once whatever the policies and the
// interface; only this adapter and the front end are templates.

#include <hotreload/abi.hpp>
#include <hotreload/detail/keepalive_executor.hpp>
#include <hotreload/detail/result.hpp>
#include <hotreload/loader/loader.hpp>
#include <hotreload/options.hpp>
#include <hotreload/state/state_store.hpp>
#include <hotreload/watcher/watcher.hpp>

#include <boost/json/object.hpp>

#include <concepts>
#include <filesystem>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

namespace hotreload::detail {

class policy_ops {
public:
  /// A fresh mapping of `file` (the Loader's async_load if it has one, else its load).
  virtual awaitable<result<loaded_library>> load(std::filesystem::path file) = 0;
  virtual error_info watch(const std::vector<std::filesystem::path>& dirs, change_handler on_change,
                           watch_reporter report) = 0;
  virtual void unwatch() = 0;
  virtual bool preserves_state() const noexcept = 0;
  /// Whether save_state never refuses a snapshot (state_store_accepting).
  virtual bool accepts_every_snapshot() const noexcept = 0;
  /// In the reload's window: saved, or staged (state_store_staging).
  virtual error_info save_state(std::string_view plugin, const snapshot_ptr& snapshot) = 0;
  /// Once callers no longer wait: what was staged, made durable.
  virtual error_info commit_state(std::string_view plugin) = 0;
  virtual snapshot_ptr load_state(std::string_view plugin) = 0; ///< null if none
  /// The host's executor, also owning `keep` (a version): what a plugin's context hands out.
  virtual asio::any_io_executor executor_keeping(std::shared_ptr<const void> keep) const = 0;

protected:
  ~policy_ops() = default;
};

/// The host's interface, as the engine needs it: the ABI tag plugins must carry, and how a
/// factory's pointer (an Interface*) becomes the plugin base the hooks are called on.
struct interface_traits {
  abi_tag tag;
  plugin* (*upcast)(void* iface) noexcept;

  template <class Interface>
  static interface_traits of() {
    return {make_abi_tag<Interface>(), [](void* p) noexcept -> plugin* { return static_cast<Interface*>(p); }};
  }
};

/// A policy built from whatever it accepts: (executor, options), (executor), (options) or
/// nothing. Returned as a prvalue, so that it need not be movable.
template <class P, class Executor>
P make_policy(const Executor& ex, const options& o) {
  if constexpr (std::constructible_from<P, Executor, const options&>) return P(ex, o);
  else if constexpr (std::constructible_from<P, Executor>) return P(ex);
  else if constexpr (std::constructible_from<P, const options&>) return P(o);
  else return P();
}

/// The three policies, each built in place from whatever it accepts: (executor, options),
/// (executor), (options) or nothing; or given ready-made.
template <class Executor, class Watcher, class Loader, class State>
class policy_set final : public policy_ops {
public:
  policy_set(const Executor& ex, const options& o) : ex_(ex), watcher_(ex, o), loader_(ex, o), state_(ex, o) {}
  policy_set(const Executor& ex, Watcher w, Loader l, State s)
      : ex_(ex), watcher_(std::move(w)), loader_(std::move(l)), state_(std::move(s)) {}

  Watcher& watcher() noexcept { return watcher_.value; }
  Loader& loader() noexcept { return loader_.value; }
  State& state() noexcept { return state_.value; }

  awaitable<result<loaded_library>> load(std::filesystem::path file) override {
    result<loaded_library> r;
    if constexpr (requires(Loader& l) { l.async_load(file); }) {
      auto loaded = co_await loader_.value.async_load(file);
      r.value = std::move(loaded.first);
      r.error = std::move(loaded.second);
    } else {
      r.value = loader_.value.load(file, r.error);
    }
    co_return r;
  }
  error_info watch(const std::vector<std::filesystem::path>& dirs, change_handler on_change,
                   watch_reporter report) override {
    if constexpr (reporting_watcher<Watcher>) return watcher_.value.start(dirs, std::move(on_change), std::move(report));
    else return watcher_.value.start(dirs, std::move(on_change));
  }
  void unwatch() override { watcher_.value.stop(); }
  bool preserves_state() const noexcept override { return State::preserves_state; }
  bool accepts_every_snapshot() const noexcept override { return state_store_accepting<State>; }
  error_info save_state(std::string_view plugin, const snapshot_ptr& snapshot) override {
    if constexpr (state_store_staging<State>) return state_.value.stage(plugin, snapshot);
    else if constexpr (state_store_sharing<State>) return state_.value.save(plugin, snapshot);
    else return state_.value.save(plugin, *snapshot);
  }
  error_info commit_state(std::string_view plugin) override {
    if constexpr (state_store_staging<State>) return state_.value.commit(plugin);
    else return {};
  }
  snapshot_ptr load_state(std::string_view plugin) override {
    auto snap = state_.value.load(plugin);
    return snap ? std::make_shared<const boost::json::object>(std::move(*snap)) : nullptr;
  }
  asio::any_io_executor executor_keeping(std::shared_ptr<const void> keep) const override {
    return asio::any_io_executor(keepalive_executor<Executor>(ex_, std::move(keep)));
  }

private:
  // A policy built in place, so that it need not be movable (a [[no_unique_address]] member
  // cannot be initialised by elision).
  template <class P>
  struct holder {
    holder(const Executor& ex, const options& o) : value(make_policy<P>(ex, o)) {}
    explicit holder(P&& p) : value(std::move(p)) {}
    P value;
  };
  Executor ex_;
  [[no_unique_address]] holder<Watcher> watcher_;
  [[no_unique_address]] holder<Loader> loader_;
  [[no_unique_address]] holder<State> state_;
};

} // namespace hotreload::detail

#endif
