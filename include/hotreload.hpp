#ifndef HOTRELOAD_HPP
#define HOTRELOAD_HPP

#include <hotreload/config.hpp>
#include <hotreload/error.hpp>
#include <hotreload/log.hpp>
#include <hotreload/metadata.hpp>
#include <hotreload/plugin.hpp>
#include <hotreload/abi.hpp>
#include <hotreload/export.hpp>
#include <hotreload/plugin_ptr.hpp>
#include <hotreload/options.hpp>
#include <hotreload/events.hpp>
#include <hotreload/acceptance.hpp>
#include <hotreload/watcher/watcher.hpp>
#include <hotreload/watcher/manual_watcher.hpp>
#include <hotreload/watcher/inotify_watcher.hpp>
#include <hotreload/watcher/polling_watcher.hpp>
#include <hotreload/watcher/default_watcher.hpp>
#include <hotreload/watcher/rebuild_watcher.hpp>
#include <hotreload/loader/loader.hpp>
#include <hotreload/loader/dll_loader.hpp>
#include <hotreload/state/state_store.hpp>
#include <hotreload/state/json_state.hpp>
#include <hotreload/state/null_state.hpp>
#include <hotreload/state/persistent_json_state.hpp>
#include <hotreload/basic_hot_reloader.hpp>
#include <hotreload/hot_reloader.hpp>

#endif
