#ifndef HOTRELOAD_STATE_STATE_STORE_HPP
#define HOTRELOAD_STATE_STATE_STORE_HPP

#include <hotreload/error.hpp>

#include <boost/json/object.hpp>

#include <concepts>
#include <optional>
#include <memory>
#include <string_view>

namespace hotreload {

/// A State policy keeps each plugin's last snapshot, a JSON object
/// `{"enabled": bool, "state_version": N, "custom": <what get_reload_state returned>}`.
/// The reloader saves one before every teardown (reload or stop) and loads it when a
/// plugin starts, on its strand. A save that fails (a policy may refuse a snapshot) fails the
/// reload before the old instance is touched (unless the policy says it accepts every
/// snapshot: state_store_accepting). `preserves_state == false` skips
/// get_reload_state/set_reload_state.
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

/// A snapshot shared, immutable, between a reload (which keeps it for a rollback) and the
/// State policy: a large state is not copied to be stored.
using snapshot_ptr = std::shared_ptr<const boost::json::object>;

/// Optional: a State policy that keeps the shared snapshot itself (json_state does) instead of
/// copying it through `save(name, const object&)`.
template <class S>
concept state_store_sharing = requires(S& s, std::string_view name, snapshot_ptr snapshot) {
  { s.save(name, snapshot) } -> std::same_as<error_info>;
};

/// Optional: a State policy whose `save` (or `stage`) never refuses a snapshot says so with
/// `static constexpr bool accepts_every_snapshot = true;` (json_state and
/// persistent_json_state do). A reload of one plugin then takes the old instance's snapshot in
/// the same job on the hook thread as its teardown and the new instance's calls, and saves it
/// once that job is back: one hand-off between threads fewer while callers wait. A save that
/// fails all the same comes too late to stop the reload: it is logged and recorded as the
/// plugin's last_error, as a failed commit is, and the reload stands.
template <class S>
concept state_store_accepting = requires { requires bool(S::accepts_every_snapshot); };

/// Optional: a State policy whose saves are slow (persistent_json_state writes a file and
/// syncs it: 0.7 ms at p50, 8 ms at p99 on this project's machine) stages each snapshot
/// instead, in the reload's window, and commits it once the window is over: callers do not
/// wait for the write. `stage` keeps the snapshot and may refuse it as `save` may (the
/// reload then fails, the old version untouched); `commit(name)` makes the last one staged
/// durable. A failed commit is logged and recorded as the plugin's last_error; the reload
/// stands (the serving instance has the state).
template <class S>
concept state_store_staging = requires(S& s, std::string_view name, snapshot_ptr snapshot) {
  { s.stage(name, snapshot) } -> std::same_as<error_info>;
  { s.commit(name) } -> std::same_as<error_info>;
};

} // namespace hotreload

#endif
