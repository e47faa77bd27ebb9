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

/// Time limits of plugin code: the constructor and each hook. Plugin code runs on threads
/// of the reloader's own, so code over its limit (suspended or blocking its thread) never
/// stalls the program: it is cancelled (through Asio's per-operation cancellation) and
/// abandoned, and counts as failed (errc::hook_timeout). It keeps its library mapped until it
/// really returns (plugin_info::abandoned_calls). During a reload or a stop, each limit is also
/// cut to what is left of options.max_caller_wait.
struct hook_timeouts {
  std::chrono::milliseconds setup{30'000};
  std::chrono::milliseconds teardown{10'000};
  std::chrono::milliseconds on_reload{10'000};
  std::chrono::milliseconds get_state{5'000};
  std::chrono::milliseconds set_state{5'000};
  std::chrono::milliseconds construct{5'000};
  /// The host's acceptance check (basic_hot_reloader::set_acceptance_check).
  std::chrono::milliseconds accept{5'000};
};

/// What rebuild_watcher runs, and on which changes.
struct rebuild_options {
  /// The build, run by `/bin/sh -c` in `directory`: `ninja -C build`, `meson compile -C
  /// build greeter`, `cmake --build build --target greeter`... Required by rebuild_watcher.
  std::string command{};
  /// Where the command runs. Empty: the program's working directory.
  std::filesystem::path directory{};
  /// Source trees watched (recursively) for changes.
  std::vector<std::filesystem::path> sources{};
  /// A build's compile_commands.json (meson and CMake write one): the directories of the
  /// files it lists are watched too, and it is read again after every build.
  std::filesystem::path compile_commands{};
  /// Only files whose name matches one of these start a build; empty: default_globs() (C
  /// and C++ sources and headers, meson.build, CMakeLists.txt, *.cmake). Names that begin
  /// with `.` (editors' swap and lock files) and files inside a build tree (a directory
  /// holding build.ninja, CMakeCache.txt or meson-private, and everything below it) never do.
  std::vector<std::string> globs{};
  /// Saves within this window start one build (an editor's "save all" writes several files).
  std::chrono::milliseconds debounce{25};
  /// A build running longer is stopped (its process group gets SIGTERM, then SIGKILL) and
  /// counts as failed.
  std::chrono::milliseconds timeout{600'000};
  /// How many of the compiler's lines a build_failed carries (from its first error on).
  std::size_t error_lines = 12;

  static std::vector<std::string> default_globs() {
    return {"*.c",   "*.cc",  "*.cpp", "*.cxx", "*.c++", "*.h",    "*.hh",        "*.hpp",          "*.hxx",
            "*.h++", "*.ipp", "*.inl", "*.tpp", "*.ixx", "*.cppm", "meson.build", "CMakeLists.txt", "*.cmake"};
  }
};

/// Checks a library file must pass before it is loaded, so that nobody but the operator can
/// get code loaded. All on by default; each can be relaxed. (A library must also be a
/// regular file: FIFOs, sockets, devices and directories are always refused.)
struct trust_checks {
  /// The file, and every directory from it up to its plugin directory, is owned by the
  /// process's effective user or by root.
  bool owner = true;
  /// ... and is not writable by group or others.
  bool permissions = true;
  /// The file's path, symlinks resolved, lies inside one of the plugin directories.
  bool inside_plugin_dirs = true;
};

/// What happens when a loaded plugin's library file is deleted.
enum class remove_action {
  keep,   ///< log a warning; the loaded version keeps serving
  unload, ///< tear the plugin down and unload it, as async_stop does for one plugin
};

/// Configuration of a basic_hot_reloader: a plain aggregate, meant for designated
/// initialisers, e.g. `hr::options{.plugin_dirs = {"plugins"}, .debounce = 100ms}`.
struct options {
  /// Directories searched for plugin libraries at start (and watched by file watchers).
  std::vector<std::filesystem::path> plugin_dirs{};
  /// File changes within this window coalesce into one reload per plugin (file watchers).
  std::chrono::milliseconds debounce{100};
  /// Also watch the directories listed in this environment variable (`:`-separated).
  /// Empty: no variable is read.
  std::string paths_env = "HOTRELOAD_PLUGIN_PATHS";
  /// A missing or unreadable plugin directory fails async_start (errc::bad_plugin_dir);
  /// with this set, it is only logged as a warning and skipped.
  bool allow_missing_dirs = false;
  /// Only files whose name matches one of these globs trigger anything (empty: all
  /// libraries); then none whose name matches one of `exclude`.
  std::vector<std::string> include{};
  std::vector<std::string> exclude{};
  /// What a deleted library does to its running plugin. A rebuild often deletes the file
  /// before writing the new one, so by default the loaded version keeps serving.
  remove_action on_remove = remove_action::keep;
  /// What rebuild_watcher runs, and on which changes (unused by the other watchers).
  rebuild_options rebuild{};
  /// Scan interval of polling_watcher.
  std::chrono::milliseconds poll_interval{100};
  /// Where shadow copies are loaded from. Empty: `<temp dir>/hotreload-<uid>`. Each
  /// reloader uses a private subdirectory (0700) and removes those of dead processes.
  std::filesystem::path shadow_dir{};
  /// Which checks a library must pass before it is loaded.
  trust_checks trust{};
  /// Load each new library first in another process, so that a static initialiser that
  /// throws (std::terminate), crashes, hangs or calls exit ends that process, not this
  /// program; the library is then refused. The loader forks one small probe server when it
  /// is created (so create the reloader early, before the program grows: it is a copy of the
  /// program at that moment, holding none of its descriptors); its worker processes load
  /// each library, whatever the program weighs by then, and the reloader awaits the answer
  /// without blocking its thread. Static initialisers (and, with probe_reuse above 1, static
  /// destructors) run in the probe, then here: turn the probe off for
  /// plugins whose static initialisers must not.
  bool probe_in_child = true;
  /// Longest wait for the probe's static initialisers (and again for its destructors).
  std::chrono::milliseconds probe_timeout{10'000};
  /// How many libraries one probe worker loads and unloads before it is replaced. A worker
  /// is also replaced at once when a library leaves it unclean (still mapped after dlclose,
  /// a thread or a descriptor left behind, or 64 MB more memory resident than when it
  /// started), crashes it or outlasts probe_timeout. 1: a fresh process for every probe. The
  /// probe after a replacement costs a fresh process's first load (0.9-3 ms on this project's
  /// VMs, against 0.2-0.3 ms in a worker that has loaded before).
  int probe_reuse = 1000;
  /// Where persistent_json_state writes its snapshots, one `<plugin>.json` per plugin
  /// (created 0700 if missing). Unused by the other State policies.
  std::filesystem::path state_dir{};
  /// The longest a reload (or a stop) may hold a plugin's callers: from the moment it
  /// withdraws the old version until it publishes the new one, every step (the wait for
  /// plugin_ptrs, get_reload_state, teardown_async, the constructor, set_reload_state,
  /// on_reload_async) must fit in it; each step's own limit is cut to what is left (a
  /// teardown gets at most half, so that the new version still has time). Past it the
  /// reload fails (errc::hook_timeout, naming the hook) and the old version serves again,
  /// from its snapshot. An async_get waiting for a reload never waits longer: past it, it
  /// completes with errc::caller_wait_timeout (the rollback may still be under way).
  std::chrono::milliseconds max_caller_wait{2'000};
  /// Longest wait, during a reload, for plugin_ptrs to the old version to be released (also
  /// cut to max_caller_wait). Past it the reload fails with errc::quiesce_timeout and the old
  /// version keeps serving.
  std::chrono::milliseconds quiesce_timeout{5'000};
  /// Time limits of each hook kind.
  hook_timeouts timeouts{};
  /// Make before break: during a reload, tear the old instances down while the new ones
  /// come up (constructor, state, on_reload_async) instead of before, so a reload takes the
  /// longer of the two instead of their sum. Only for plugins whose old and new instances
  /// can coexist for that moment: nothing exclusive (a bound port, a file lock) is held from
  /// setup to teardown. Callers still never see either instance half-way: they wait, as
  /// always, until the new instance is published. A rollback also overlaps the teardown.
  bool overlap_teardown = false;
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
