#ifndef HOTRELOAD_STATE_STATE_STORE_HPP
#define HOTRELOAD_STATE_STATE_STORE_HPP

#include <hotreload/error.hpp>

#include <boost/json/object.hpp>

#include <concepts>
#include <optional>
#include <string_view>

namespace hotreload {

/// A State policy keeps each plugin's last snapshot, a JSON object
/// `{"enabled": bool, "state_version": N, "custom": <what get_reload_state returned>}`.
/// The reloader saves one before every teardown (reload or stop) and loads it when a
/// plugin starts. `preserves_state == false` skips get_reload_state/set_reload_state.
template <class S>
concept state_store_flag = requires { { S::preserves_state } -> std::convertible_to<bool>; };
template <class S>
concept state_store_save = requires(S& s, std::string_view name, const boost::json::object& snapshot) {
  { s.save(name, snapshot) } -> std::same_as<error_info>;
};
template <class S>
concept state_store_load = requires(S& s, std::string_view name) {
  { s.load(name) } -> std::same_as<std::optional<boost::json::object>>;
};
template <class S>
concept state_store = state_store_flag<S> && state_store_save<S> && state_store_load<S>;

} // namespace hotreload

#endif
