#ifndef HOTRELOAD_DETAIL_ENGINE_TYPES_HPP
#define HOTRELOAD_DETAIL_ENGINE_TYPES_HPP

// The types the front end and the engine pass each other, declared without the engine.

#include <hotreload/acceptance.hpp>
#include <hotreload/config.hpp>
#include <hotreload/error.hpp>
#include <hotreload/metadata.hpp>

#include <functional>
#include <memory>

namespace hotreload::detail {

/// What plugin_ptrs share: one publication of one instance (registry.hpp).
struct lease_block;
using lease_ptr = std::shared_ptr<lease_block>;

/// A caller of async_get waiting for a reload to end: the new lease, or why there is none.
using waiter = std::function<void(error_info, lease_ptr)>;

/// The host's acceptance check, for any interface: (old version or null, new version, the
/// new instance as an Interface*).
using acceptance_fn = std::function<awaitable<verdict>(const plugin_metadata*, const plugin_metadata&, void*)>;

} // namespace hotreload::detail

#endif
