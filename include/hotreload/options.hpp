#ifndef HOTRELOAD_OPTIONS_HPP
#define HOTRELOAD_OPTIONS_HPP

#include <hotreload/log.hpp>
#include <hotreload/plugin.hpp>

#include <boost/json/object.hpp>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace hotreload {

/// Time limits of the plugin hooks. A hook over its limit is cancelled (through Asio's
/// per-operation cancellation) and counts as failed; its library stays mapped until the
/// hook's coroutine has really finished.
struct hook_timeouts {
  std::chrono::milliseconds setup{30'000};
  std::chrono::milliseconds teardown{10'000};
  std::chrono::milliseconds on_reload{10'000};
  std::chrono::milliseconds get_state{5'000};
  std::chrono::milliseconds set_state{5'000};
};

/// Configuration of a basic_hot_reloader: a plain aggregate, meant for designated
/// initialisers, e.g. `hr::options{.plugin_dirs = {"plugins"}, .debounce = 100ms}`.
struct options {
  /// Directories searched for plugin libraries at start (and watched by file watchers).
  std::vector<std::filesystem::path> plugin_dirs{};
  /// File changes within this window coalesce into one reload per plugin (file watchers).
  std::chrono::milliseconds debounce{100};
  /// Where shadow copies are loaded from. Empty: `<temp dir>/hotreload-<uid>`. Each
  /// reloader uses a private subdirectory (0700) and removes those of dead processes.
  std::filesystem::path shadow_dir{};
  /// Longest wait, during a reload, for plugin_ptrs to the old version to be released.
  /// Past it the reload fails with errc::quiesce_timeout and the old version keeps serving.
  std::chrono::milliseconds quiesce_timeout{5'000};
  /// Time limits of each hook kind.
  hook_timeouts timeouts{};
  /// Least severe log level written to `sink`.
  log_level verbosity = log_level::info;
  /// Where log lines go; empty means `[LEVEL] message` lines on stderr.
  log_sink sink{};
  /// Per-plugin configuration: `{"counter": {...}}` gives `{...}` to plugin "counter".
  boost::json::object plugin_config{};
  /// An object the host shares with every plugin (plugin_context::shared<T>()).
  shared_context shared{};
  /// File name ending of plugin libraries.
  std::string library_suffix = ".so";
};

} // namespace hotreload

#endif
