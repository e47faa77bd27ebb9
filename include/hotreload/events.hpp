#ifndef HOTRELOAD_EVENTS_HPP
#define HOTRELOAD_EVENTS_HPP

#include <hotreload/error.hpp>

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace hotreload {

/// What a reload_event reports.
enum class event_kind {
  loaded,         ///< a plugin started for the first time (setup_async done, serving)
  load_failed,    ///< a plugin could not start
  reload_started, ///< a reload began (the old version still serves)
  reload_step,    ///< one step of a reload finished (see reload_event::step)
  reloaded,       ///< the new version serves
  reload_failed,  ///< the reload failed (followed by rolled_back if the old version was restored)
  rolled_back,    ///< the old version serves again, with its state
  unloaded,       ///< a version's library was unmapped and its shadow copy deleted
  pinned,         ///< a version's last reference went, but its library stayed mapped (the log says why)
  file_removed,   ///< a loaded plugin's library file was deleted (see options.on_remove)
  stopped,        ///< the plugin was torn down by async_stop
  enabled,
  disabled,
  abandoned,      ///< plugin code (a constructor or hook) ran past its limit and was abandoned (error says which)
  returned,       ///< abandoned plugin code returned at last (duration: since it was called)
  build_started,  ///< rebuild_watcher ran the build command (detail: the command)
  build_succeeded, ///< the build finished with exit status 0 (duration: the build's)
  build_failed,   ///< the build failed (error: its exit status; detail: the compiler's first error lines)
};

/// The steps of the reload transaction, in order.
enum class reload_step {
  none,
  library_loaded, ///< 1: new library copied, loaded, ABI tag and metadata checked
  quiesced,       ///< 2: no caller holds the old version
  state_saved,    ///< 3: get_reload_state done, snapshot given to the State policy (staged, if it writes later)
  torn_down,      ///< 4: teardown_async done on the old instance
  constructed,    ///< 5: new instance constructed
  state_restored, ///< 6: set_reload_state done on the new instance
  reload_hook,    ///< 7: on_reload_async done
  published,      ///< 8: new instance serving
};

std::string_view to_string(event_kind k) noexcept;
std::string_view to_string(reload_step s) noexcept;

/// One observable event. Delivered to subscribers on the reloader's strand, in order.
struct reload_event {
  event_kind kind;
  std::string plugin;
  std::string old_version;
  std::string new_version;
  reload_step step = reload_step::none;
  std::chrono::nanoseconds duration{}; ///< since the operation (or the step) started
  error_info error{};                  ///< set for load_failed, reload_failed, rollbacks
  std::string detail{};                ///< build events: see event_kind
};

using event_handler = std::function<void(const reload_event&)>;

inline std::string_view to_string(event_kind k) noexcept {
  switch (k) {
  case event_kind::loaded: return "loaded";
  case event_kind::load_failed: return "load_failed";
  case event_kind::reload_started: return "reload_started";
  case event_kind::reload_step: return "reload_step";
  case event_kind::reloaded: return "reloaded";
  case event_kind::reload_failed: return "reload_failed";
  case event_kind::rolled_back: return "rolled_back";
  case event_kind::unloaded: return "unloaded";
  case event_kind::pinned: return "pinned";
  case event_kind::file_removed: return "file_removed";
  case event_kind::stopped: return "stopped";
  case event_kind::enabled: return "enabled";
  case event_kind::disabled: return "disabled";
  case event_kind::abandoned: return "abandoned";
  case event_kind::returned: return "returned";
  case event_kind::build_started: return "build_started";
  case event_kind::build_succeeded: return "build_succeeded";
  case event_kind::build_failed: return "build_failed";
  }
  return "?";
}

inline std::string_view to_string(reload_step s) noexcept {
  switch (s) {
  case reload_step::none: return "none";
  case reload_step::library_loaded: return "library_loaded";
  case reload_step::quiesced: return "quiesced";
  case reload_step::state_saved: return "state_saved";
  case reload_step::torn_down: return "torn_down";
  case reload_step::constructed: return "constructed";
  case reload_step::state_restored: return "state_restored";
  case reload_step::reload_hook: return "reload_hook";
  case reload_step::published: return "published";
  }
  return "?";
}

} // namespace hotreload

#endif
