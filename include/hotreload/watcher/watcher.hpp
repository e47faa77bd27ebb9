#ifndef HOTRELOAD_WATCHER_WATCHER_HPP
#define HOTRELOAD_WATCHER_WATCHER_HPP

#include <hotreload/error.hpp>

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
};

/// Receives batches of changes; called on the reloader's executor.
using change_handler = std::function<void(std::vector<file_change>)>;

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

} // namespace hotreload

#endif
