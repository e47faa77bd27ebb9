#ifndef HOTRELOAD_STATE_JSON_STATE_HPP
#define HOTRELOAD_STATE_JSON_STATE_HPP

#include <hotreload/state/state_store.hpp>

#include <map>
#include <string>

namespace hotreload {

/// The default State policy: snapshots (the enabled flag and the plugin's own state) kept in
/// memory as Boost.JSON objects. They survive reloads and stop/start of the reloader, not
/// the process. Used on the reloader's strand only.
class json_state {
public:
  static constexpr bool preserves_state = true;
  static constexpr bool accepts_every_snapshot = true;

  error_info save(std::string_view name, const boost::json::object& snapshot) {
    return save(name, std::make_shared<const boost::json::object>(snapshot));
  }
  /// Keeps the reload's own snapshot (no copy: a large state is stored for free).
  error_info save(std::string_view name, snapshot_ptr snapshot) {
    snapshots_.insert_or_assign(std::string(name), std::move(snapshot));
    return {};
  }
  std::optional<boost::json::object> load(std::string_view name) const {
    auto it = snapshots_.find(name);
    if (it == snapshots_.end() || !it->second) return std::nullopt;
    return *it->second;
  }

private:
  std::map<std::string, snapshot_ptr, std::less<>> snapshots_;
};

static_assert(state_store<json_state> && state_store_sharing<json_state> && state_store_accepting<json_state>);

} // namespace hotreload

#endif
