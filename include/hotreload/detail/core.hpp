#ifndef HOTRELOAD_DETAIL_CORE_HPP
#define HOTRELOAD_DETAIL_CORE_HPP

// The reloader's parts, in one object shared by the front end and by everything that may
// outlive it (versions still held by plugin_ptrs, dependency resolvers, a watcher's
// delivery in flight): they hold weak references to it, and find it closed once the front
// end is gone.

#include <hotreload/detail/change_feed.hpp>
#include <hotreload/detail/event_hub.hpp>
#include <hotreload/detail/hooks.hpp>
#include <hotreload/detail/lease_gate.hpp>
#include <hotreload/detail/policies.hpp>
#include <hotreload/detail/registry.hpp>
#include <hotreload/detail/versions.hpp>
#include <hotreload/options.hpp>

#include <boost/asio/strand.hpp>

namespace hotreload::detail {

/// Where the reloader as a whole stands. Strand only.
enum class lifecycle {
  stopped,  ///< before async_start, and after async_stop
  running,  ///< started: plugins load, reload and serve
  stopping, ///< async_stop under way: nothing new begins
};

struct core {
  core(asio::any_io_executor ex, options o, policy_ops& p, interface_traits t)
      : opts(std::move(o)), strand(asio::make_strand(ex)), hub(logger(opts.verbosity, opts.sink)),
        gate(reg, strand, opts), feed(opts, hub), versions(opts, strand, hub, p, t),
        hooks(opts, hub, p, reg, versions, threads), policies(p) {
    versions.hand_unmapping_to(threads.hand());
  }
  core(const core&) = delete;
  core& operator=(const core&) = delete;

  bool running() const noexcept { return state == lifecycle::running; }

  const options opts;
  strand_t strand;
  event_hub hub;         // the log, the subscribers, the versions not yet unmapped
  registry reg;          // the entries; the only mutex
  lease_gate gate;       // what callers are handed
  change_feed feed;      // plugin directories, filters, debounce
  version_factory versions;
  hook_threads threads;  // where plugin code runs
  hook_runner hooks;
  policy_ops& policies;  // owned by the front end; unused once it is gone
  lifecycle state = lifecycle::stopped;
};

} // namespace hotreload::detail

#endif
