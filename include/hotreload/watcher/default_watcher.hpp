#ifndef HOTRELOAD_WATCHER_DEFAULT_WATCHER_HPP
#define HOTRELOAD_WATCHER_DEFAULT_WATCHER_HPP

#if defined(__linux__)
#include <hotreload/watcher/inotify_watcher.hpp>
#else
#include <hotreload/watcher/polling_watcher.hpp>
#endif

namespace hotreload {

/// The platform's best Watcher: inotify on Linux, polling elsewhere.
#if defined(__linux__)
using default_watcher = inotify_watcher;
#else
using default_watcher = polling_watcher;
#endif

} // namespace hotreload

#endif
