#ifndef HOTRELOAD_STATE_NULL_STATE_HPP
#define HOTRELOAD_STATE_NULL_STATE_HPP

#include <hotreload/state/state_store.hpp>

namespace hotreload {

/// A State policy that keeps nothing: get_reload_state/set_reload_state are never called and
/// every version starts fresh (the enabled flag is still kept by the reloader).
class null_state {
public:
  static constexpr bool preserves_state = false;
  error_info save(std::string_view, const boost::json::object&) { return {}; }
  std::optional<boost::json::object> load(std::string_view) const { return std::nullopt; }
};

static_assert(state_store<null_state>);

} // namespace hotreload

#endif
