#ifndef HOTRELOAD_PLUGIN_INFO_HPP
#define HOTRELOAD_PLUGIN_INFO_HPP

#include <hotreload/error.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace hotreload {

/// A plugin as the reloader sees it, for listings (`plugins` command, `GET /plugins`).
struct plugin_info {
  std::string name;
  std::string version;                          ///< of the serving version ("" if none)
  std::filesystem::path path;                   ///< the library file in the plugin directory
  bool enabled = true;
  bool serving = false;                         ///< a version is loaded and set up
  std::chrono::system_clock::time_point loaded_at{}; ///< when the serving version was published
  std::size_t reloads = 0;                      ///< successful reloads
  std::size_t pinned_versions = 0;              ///< released versions that stayed mapped (event_kind::pinned)
  std::size_t abandoned_calls = 0;              ///< constructors and hooks past their limit, still running
  std::int64_t state_version = 1;
  std::optional<error_info> last_error;         ///< of the last failed operation, if any
};

} // namespace hotreload

#endif
