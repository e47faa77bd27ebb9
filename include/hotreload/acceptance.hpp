#ifndef HOTRELOAD_ACCEPTANCE_HPP
#define HOTRELOAD_ACCEPTANCE_HPP

#include <hotreload/config.hpp>
#include <hotreload/metadata.hpp>

#include <functional>
#include <string>

namespace hotreload {

/// An acceptance check's answer.
struct verdict {
  static verdict accept() { return {}; }
  /// `reason` reaches the log, the reload_failed (or load_failed) event and the rollback.
  static verdict refuse(std::string reason) { return {false, std::move(reason)}; }

  bool accepted = true;
  std::string reason{};
};

/// What an acceptance check is asked about: a new version's instance, ready but not serving.
template <class Interface>
struct candidate {
  /// The version serving now; null on a first load (or after the plugin had failed).
  const plugin_metadata* old_version;
  const plugin_metadata& new_version;
  /// Set up (first load) or given its state and on_reload_async (reload), not yet handed out.
  Interface& instance;
};

/// The host's last word before a new version serves (basic_hot_reloader::set_acceptance_check).
/// Runs on the reloader's own threads, like plugin code, within options.timeouts.accept (and,
/// during a reload, what is left of options.max_caller_wait). Refusing, throwing or running
/// late refuses the version (errc::not_accepted): a reload rolls back to the old version with
/// its state, a first load does not start the plugin. The refused instance is torn down
/// (teardown_async) and destroyed.
template <class Interface>
using acceptance_check = std::function<awaitable<verdict>(candidate<Interface>)>;

} // namespace hotreload

#endif
