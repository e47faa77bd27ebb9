#ifndef HOTRELOAD_LOADER_LOADER_HPP
#define HOTRELOAD_LOADER_LOADER_HPP

#include <hotreload/abi.hpp>
#include <hotreload/error.hpp>
#include <hotreload/export.hpp>

#include <concepts>
#include <filesystem>
#include <memory>
#include <string_view>

namespace hotreload {

/// One loaded version of a plugin library, as a Loader hands it to the reloader: the three
/// exports of HOTRELOAD_PLUGIN, resolved but not yet trusted (the reloader checks the tag
/// and parses the metadata before calling `create`).
struct loaded_library {
  std::filesystem::path source;         ///< the file in the plugin directory
  std::filesystem::path image;          ///< the file actually mapped (a shadow copy)
  const abi_tag* tag = nullptr;         ///< `hotreload_abi_tag`
  std::string_view metadata;            ///< `hotreload_metadata`
  detail::create_fn* create = nullptr;  ///< `hotreload_create`
  /// Owns the mapping: releasing the last copy unloads the library and deletes `image`.
  /// The reloader releases it only on its own background thread (one per process, one
  /// release at a time), never inside plugin code nor on the program's threads.
  std::shared_ptr<void> handle;
};

/// A Loader policy maps a library file and resolves the plugin exports, or fills `error`
/// (errc::file_not_found, shadow_copy_failed, load_failed, not_a_plugin) and returns an
/// empty loaded_library. Every call must yield a distinct mapping even for the same path.
/// A Loader may also offer `awaitable<std::pair<loaded_library, error_info>>
/// async_load(std::filesystem::path)`; the reloader then uses it instead, so slow steps (a
/// probe process, a download) do not block its executor.
template <class L>
concept loader = requires(L& l, const std::filesystem::path& path, error_info& error) {
  { l.load(path, error) } -> std::same_as<loaded_library>;
};

} // namespace hotreload

#endif
