#ifndef HOTRELOAD_WATCHER_MANUAL_WATCHER_HPP
#define HOTRELOAD_WATCHER_MANUAL_WATCHER_HPP

#include <hotreload/watcher/watcher.hpp>

namespace hotreload {

/// A Watcher that watches nothing: plugins reload only when the host asks
/// (async_reload_plugin). Costs nothing at all.
class manual_watcher {
public:
  error_info start(const std::vector<std::filesystem::path>&, change_handler) { return {}; }
  void stop() {}
};

static_assert(watcher<manual_watcher>);

} // namespace hotreload

#endif
