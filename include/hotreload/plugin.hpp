#ifndef HOTRELOAD_PLUGIN_HPP
#define HOTRELOAD_PLUGIN_HPP

#include <hotreload/config.hpp>
#include <hotreload/log.hpp>
#include <hotreload/plugin_ptr.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <typeinfo>

namespace hotreload {

/// The base class of every plugin interface. A host derives its interface from it and names
/// it, e.g. `struct greeter : hotreload::plugin { using interface_type = greeter; ... };`
/// (the name goes into the ABI tag, so a plugin built for another interface is refused).
/// Optionally `static constexpr unsigned interface_version = N;`: bump it on every change of
/// the interface's layout or virtual functions.
///
/// Every hook is a coroutine that defaults to doing nothing. Reload order: get_reload_state
/// (old) -> teardown_async (old) -> constructor (new) -> [migrate_state (new), if the
/// versions' state_version differ] -> adopt_reload_state (new; by default it copies the state
/// into set_reload_state) -> on_reload_async (new).
/// First load: constructor -> setup_async.
class plugin {
public:
  plugin() = default;
  plugin(const plugin&) = delete;
  plugin& operator=(const plugin&) = delete;
  virtual ~plugin() = default;

  /// Asynchronous initialisation on the first load only (not on a reload).
  virtual awaitable<void> setup_async() { co_return; }
  /// Releases resources before the instance is replaced or the reloader stops.
  virtual awaitable<void> teardown_async() { co_return; }
  /// Runs on the new instance after set_reload_state, before it serves.
  virtual awaitable<void> on_reload_async() { co_return; }
  /// The state to carry to the next version (any JSON value).
  virtual awaitable<boost::json::value> get_reload_state() { co_return boost::json::value(); }
  /// Receives what the previous version's get_reload_state returned (after migrate_state,
  /// if the formats differ).
  virtual awaitable<void> set_reload_state(boost::json::value) { co_return; }
  /// Converts a state saved by a version whose metadata `state_version` was `from_version`
  /// into this version's format (Erlang's code_change). Called on the new instance, before
  /// set_reload_state, only when the two state_versions differ; in either direction (a
  /// downgrade gives a newer format). Throwing refuses the state: the reload rolls back. The
  /// default refuses, so a state is never handed to code that does not know its format.
  virtual awaitable<boost::json::value> migrate_state(std::int64_t from_version, boost::json::value state) {
    (void)state;
    throw no_migration(from_version);
    co_return boost::json::value();
  }
  /// What set_reload_state receives, shared instead of copied: immutable, and the plugin's to
  /// keep for as long as it likes (it keeps the snapshot it belongs to alive). Override it
  /// instead of set_reload_state when the state is large or read into structures of the
  /// plugin's own: a reload then copies no state at all (the snapshot holds what
  /// get_reload_state returned, moved; the State policy and a rollback share it). The default
  /// copies it into set_reload_state. Its failures and time limit are set_reload_state's.
  virtual awaitable<void> adopt_reload_state(std::shared_ptr<const boost::json::value> state) {
    co_await set_reload_state(*state);
  }

  /// What the default migrate_state throws.
  struct no_migration : std::runtime_error {
    explicit no_migration(std::int64_t from)
        : std::runtime_error("it does not implement migrate_state, so it cannot read a state of state_version " +
                             std::to_string(from)) {}
  };
};

/// A host-defined object shared with every plugin (type-checked on access).
class shared_context {
public:
  shared_context() = default;
  template <class T>
  shared_context(std::shared_ptr<T> object) noexcept : object_(std::move(object)), type_(&typeid(T)) {}

  /// The object if it is a T, else nullptr. type_info comparison is by name, so it works
  /// across the host/plugin boundary.
  template <class T>
  T* get() const noexcept {
    return type_ && *type_ == typeid(T) ? static_cast<T*>(object_.get()) : nullptr;
  }

private:
  std::shared_ptr<void> object_;
  const std::type_info* type_ = nullptr;
};

class plugin;

/// Finds a dependency's serving instance by name (empty if none); set by the reloader.
using dependency_resolver = std::function<plugin_ptr<plugin>(std::string_view name)>;

/// What a plugin's constructor receives.
class plugin_context {
public:
  plugin_context(std::string name, asio::any_io_executor executor, plugin_logger log,
                 boost::json::object config, shared_context shared, dependency_resolver dependencies = {})
      : name_(std::move(name)), executor_(std::move(executor)), log_(std::move(log)),
        config_(std::move(config)), shared_(std::move(shared)), dependencies_(std::move(dependencies)) {}

  /// The plugin's name, from its metadata.
  const std::string& name() const noexcept { return name_; }
  /// The executor to create I/O objects and timers with. Everything created with it keeps
  /// this version of the plugin's library mapped for as long as it (or an operation on it)
  /// exists, so a pending completion handler can never run after its code is unmapped.
  const asio::any_io_executor& executor() const noexcept { return executor_; }
  /// Log lines tagged with the plugin's name, through the host's sink.
  const plugin_logger& log() const noexcept { return log_; }
  /// The plugin's configuration: options.plugin_config[name], or an empty object.
  const boost::json::object& config() const noexcept { return config_; }
  /// The host's shared object, if it is a T.
  template <class T>
  T* shared() const noexcept { return shared_.get<T>(); }
  /// A dependency declared in the metadata's "depends_on", as interface T, or empty (not
  /// declared, not serving, or not a T). Valid from the constructor on: dependencies start
  /// first, and when one reloads, its dependents are rebuilt with the new instance. The
  /// handle does not hold up the dependency's reloads (its dependents reload with it).
  template <class T>
  plugin_ptr<T> get(std::string_view dependency) const {
    if (!dependencies_) return {};
    return dynamic_pointer_cast<T>(dependencies_(dependency));
  }

private:
  std::string name_;
  asio::any_io_executor executor_;
  plugin_logger log_;
  boost::json::object config_;
  shared_context shared_;
  dependency_resolver dependencies_;
};

} // namespace hotreload

#endif
