#ifndef HOTRELOAD_WATCHER_WATCHER_HPP
#define HOTRELOAD_WATCHER_WATCHER_HPP

#include <hotreload/error.hpp>
#include <hotreload/events.hpp>
#include <hotreload/log.hpp>

#include <concepts>
#include <filesystem>
#include <functional>
#include <vector>

namespace hotreload {

/// What happened to a file, as a watcher reports it.
enum class change_kind {
  created,  ///< a new file appeared (or was renamed into place)
  modified, ///< an existing file was rewritten
  removed,  ///< the file is gone
  rescan,   ///< events were lost (or the watcher wants a full look): rescan every directory
};

struct file_change {
  change_kind kind;
  std::filesystem::path path;
  /// Whoever wrote the file is known to be done with it (a build that finished): the
  /// reloader acts at once instead of waiting options.debounce for more writes.
  bool settled = false;
};

/// Receives batches of changes; called on the reloader's executor.
using change_handler = std::function<void(std::vector<file_change>)>;

/// What a watcher may report besides changes (rebuild_watcher reports its builds): log lines
/// through the reloader's logger, and events delivered to the reloader's subscribers, in
/// order with its own, on its strand. Both callable from any thread.
struct watch_reporter {
  std::function<void(log_level, std::string_view message)> log = [](log_level, std::string_view) {};
  std::function<void(reload_event)> emit = [](reload_event) {};
};

/// A Watcher policy starts delivering raw file changes under some directories to a handler
/// and stops on request. Filtering, debounce and mapping changes to plugins are the
/// reloader's job, so a watcher only reports what the platform saw.
template <class W>
concept watcher_startable = requires(W& w, const std::vector<std::filesystem::path>& dirs, change_handler h) {
  { w.start(dirs, std::move(h)) } -> std::same_as<error_info>;
};
template <class W>
concept watcher_stoppable = requires(W& w) {
  { w.stop() } -> std::same_as<void>;
};
template <class W>
concept watcher = watcher_startable<W> && watcher_stoppable<W>;
/// A watcher that also reports (its `start` takes a third argument, a watch_reporter).
template <class W>
concept reporting_watcher =
    watcher_stoppable<W> && requires(W& w, const std::vector<std::filesystem::path>& dirs, change_handler h,
                                     watch_reporter r) {
      { w.start(dirs, std::move(h), std::move(r)) } -> std::same_as<error_info>;
    };

} // namespace hotreload

#endif
