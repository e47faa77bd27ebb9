#ifndef HOTRELOAD_HOT_RELOADER_HPP
#define HOTRELOAD_HOT_RELOADER_HPP

#include <hotreload/basic_hot_reloader.hpp>

namespace hotreload {

/// basic_hot_reloader with the default policies: default_watcher (inotify on Linux),
/// dll_loader, json_state.
template <class Interface>
using hot_reloader = basic_hot_reloader<Interface>;

} // namespace hotreload

#endif
