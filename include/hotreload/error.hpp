#ifndef HOTRELOAD_ERROR_HPP
#define HOTRELOAD_ERROR_HPP

#include <hotreload/config.hpp>

#include <boost/system/system_error.hpp>

#include <string>
#include <type_traits>

namespace hotreload {

/// One code per kind of failure. Every failure also carries a message naming the plugin,
/// the cause and the fix (see error_info).
enum class errc {
  plugin_not_found = 1, ///< no plugin of that name is loaded
  file_not_found,       ///< the plugin's library file does not exist
  shadow_copy_failed,   ///< the library could not be copied to the shadow directory
  load_failed,          ///< dlopen refused the file (not a library, truncated, undefined symbol...)
  not_a_plugin,         ///< a library without the HOTRELOAD_PLUGIN exports
  abi_mismatch,         ///< the plugin was built for another interface, ABI or Boost version
  bad_metadata,         ///< the metadata JSON is malformed or lacks a field
  name_mismatch,        ///< the new library declares another plugin name than the one reloaded
  duplicate_plugin,     ///< two libraries declare the same plugin name
  construct_failed,     ///< the plugin's constructor threw
  setup_failed,         ///< setup_async threw
  state_save_failed,    ///< get_reload_state threw
  state_restore_failed, ///< set_reload_state threw
  reload_hook_failed,   ///< on_reload_async threw
  teardown_failed,      ///< teardown_async threw (reported, never blocks a reload)
  hook_timeout,         ///< a hook exceeded its time limit
  quiesce_timeout,      ///< plugin_ptrs of the old version were held past options.quiesce_timeout
  rollback_failed,      ///< the old version could not be restored either: the plugin is unavailable
  plugin_disabled,      ///< the plugin is disabled (enable() it first)
  plugin_unavailable,   ///< the plugin failed and has no serving version
  not_started,          ///< the reloader is not started
  already_started,      ///< async_start was called twice
  stopping,             ///< the reloader is stopping; the operation was abandoned
  bad_plugin_dir,       ///< a plugin directory is missing or unreadable
  state_store_failed,   ///< the State policy could not store a snapshot
  missing_dependency,   ///< a plugin depends on a plugin that is not loaded (or cannot start)
  dependency_version,   ///< a dependency's version does not satisfy the requirement
  dependency_cycle,     ///< plugins depend on each other in a cycle
  state_migration_failed, ///< the new version's migrate_state refused or failed to convert the old state
  untrusted_file,       ///< the library or a directory above it failed a trust check (options.trust)
  caller_wait_timeout,  ///< an async_get waited options.max_caller_wait for a reload or stop of its plugin
  not_accepted,         ///< the host's acceptance check refused the new version (or did not answer in time)
  build_failed,         ///< rebuild_watcher: the build command failed, or could not be run
  bad_rebuild_setup,    ///< rebuild_watcher: options.rebuild names no command, or an unreadable source list
};

/// The error category of hotreload::errc ("hotreload").
class error_category_impl final : public boost::system::error_category {
public:
  constexpr error_category_impl() noexcept : boost::system::error_category(0x686f747265ull) {}
  const char* name() const noexcept override { return "hotreload"; }
  std::string message(int ev) const override {
    switch (static_cast<errc>(ev)) {
    case errc::plugin_not_found: return "plugin not found";
    case errc::file_not_found: return "plugin library file not found";
    case errc::shadow_copy_failed: return "shadow copy failed";
    case errc::load_failed: return "library could not be loaded";
    case errc::not_a_plugin: return "library is not a hotreload plugin";
    case errc::abi_mismatch: return "plugin ABI does not match the host";
    case errc::bad_metadata: return "plugin metadata is invalid";
    case errc::name_mismatch: return "library declares another plugin name";
    case errc::duplicate_plugin: return "two libraries declare the same plugin name";
    case errc::construct_failed: return "plugin constructor failed";
    case errc::setup_failed: return "setup_async failed";
    case errc::state_save_failed: return "get_reload_state failed";
    case errc::state_restore_failed: return "set_reload_state failed";
    case errc::reload_hook_failed: return "on_reload_async failed";
    case errc::teardown_failed: return "teardown_async failed";
    case errc::hook_timeout: return "plugin hook timed out";
    case errc::quiesce_timeout: return "plugin still in use after the quiesce timeout";
    case errc::rollback_failed: return "rollback to the previous version failed";
    case errc::plugin_disabled: return "plugin is disabled";
    case errc::plugin_unavailable: return "plugin has no serving version";
    case errc::not_started: return "reloader not started";
    case errc::already_started: return "reloader already started";
    case errc::stopping: return "reloader is stopping";
    case errc::bad_plugin_dir: return "plugin directory missing or unreadable";
    case errc::state_store_failed: return "state store failed";
    case errc::missing_dependency: return "missing dependency";
    case errc::dependency_version: return "dependency version not satisfied";
    case errc::dependency_cycle: return "dependency cycle";
    case errc::state_migration_failed: return "state migration failed";
    case errc::untrusted_file: return "untrusted plugin file";
    case errc::caller_wait_timeout: return "waited too long for a reload of the plugin";
    case errc::not_accepted: return "the host's acceptance check refused the plugin";
    case errc::build_failed: return "the build failed";
    case errc::bad_rebuild_setup: return "rebuild options are incomplete or wrong";
    }
    return "unknown hotreload error";
  }
};

/// The "hotreload" error category.
inline const boost::system::error_category& error_category() noexcept {
  static constexpr error_category_impl instance;
  return instance;
}

inline error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

/// A failure as the library reports it: the code, the plugin and a message for people.
struct error_info {
  error_code code;
  std::string plugin;
  std::string message;

  explicit operator bool() const noexcept { return static_cast<bool>(code); }
};

/// Thrown by the throwing forms (asio::use_awaitable, asio::use_future) of every operation.
class hot_reload_error : public boost::system::system_error {
public:
  explicit hot_reload_error(error_info info)
      : boost::system::system_error(info.code, info.message), plugin_(std::move(info.plugin)) {}
  /// The name of the plugin concerned (empty for reloader-wide failures).
  const std::string& plugin() const noexcept { return plugin_; }

private:
  std::string plugin_;
};

/// Thrown when a plugin's state could not be saved, restored or stored.
class state_preservation_error : public hot_reload_error {
public:
  using hot_reload_error::hot_reload_error;
};

/// The exception that the throwing form raises for `info`.
inline std::exception_ptr make_exception_ptr(const error_info& info) {
  if (!info.code) return nullptr;
  if (info.code == make_error_code(errc::state_save_failed) ||
      info.code == make_error_code(errc::state_restore_failed) ||
      info.code == make_error_code(errc::state_store_failed))
    return std::make_exception_ptr(state_preservation_error(info));
  return std::make_exception_ptr(hot_reload_error(info));
}

} // namespace hotreload

template <>
struct boost::system::is_error_code_enum<hotreload::errc> : std::true_type {};

#endif
