#ifndef HOTRELOAD_DETAIL_LEASE_GATE_HPP
#define HOTRELOAD_DETAIL_LEASE_GATE_HPP

// The lease gate: the one place that writes what callers are handed (an entry's lease and
// its quiescing flag) and that answers the callers waiting for a reload to end. Strand only.

#include <hotreload/detail/registry.hpp>
#include <hotreload/detail/result.hpp>
#include <hotreload/detail/sync.hpp>

#include <boost/asio/post.hpp>

#include <chrono>
#include <string>

namespace hotreload::detail {

/// What a publication means for the plugin's listing.
enum class publication {
  started,  ///< first start: loaded_at set
  reloaded, ///< a new version: loaded_at set, one more reload counted
  rebuilt,  ///< the same version again (rebuilt or rolled back): loaded_at set
  resumed,  ///< the instance that served before a failed reload: nothing changes
};

class lease_gate {
public:
  lease_gate(registry& r, strand_t s, std::chrono::milliseconds quiesce_timeout)
      : reg_(r), strand_(std::move(s)), quiesce_timeout_(quiesce_timeout) {}

  /// `v` and `inst` become the entry's serving version; callers get them from now on.
  void install(entry& e, version_ptr v, instance inst, publication how) {
    e.ver = std::move(v);
    e.inst = std::move(inst);
    lease_ptr old; // dropped after the lock: it may hold the last reference to an instance
    {
      auto l = reg_.lock();
      auto& g = l[e];
      old = std::exchange(g.lease, std::make_shared<lease_block>(e.inst, e.ver));
      g.quiescing = false;
      l.changed();
      if (how != publication::resumed) {
        g.info.version = e.ver->meta.version;
        g.info.state_version = e.ver->meta.state_version;
        g.info.serving = true;
        g.info.loaded_at = std::chrono::system_clock::now();
      }
      if (how == publication::reloaded) ++g.info.reloads;
    }
    release_waiters(e, {});
  }
  /// The serving instance again, after a reload that failed before touching it.
  void resume(entry& e) { install(e, e.ver, e.inst, publication::resumed); }

  /// No new caller gets the serving version, and every plugin_ptr to it is released. Past
  /// options.quiesce_timeout the step fails; with `restore`, the version then serves again.
  awaitable<error_info> quiesce(entry& e, bool restore) {
    lease_ptr mine; // dropped after the lock: it may be the last reference
    {
      auto l = reg_.lock();
      l[e].quiescing = true;
      mine = std::move(l[e].lease);
      l.changed();
    }
    if (!mine) co_return error_info{};
    auto sig = mine->signal;
    std::weak_ptr<lease_block> weak = mine;
    mine.reset();
    if (co_await released(sig)) co_return error_info{};
    if (restore) {
      {
        auto l = reg_.lock();
        l[e].lease = weak.lock();
        l[e].quiescing = false;
        l.changed();
      }
      release_waiters(e, {});
    }
    co_return fail(errc::quiesce_timeout, e.name,
                   "plugin '" + e.name + "': plugin_ptrs to the old version were still held after " +
                       std::to_string(quiesce_timeout_.count()) +
                       " ms; hold plugin_ptrs per request, not for long, or raise options.quiesce_timeout");
  }

  /// Nothing serves any more; waiting callers get `why`. With `failed`, the entry's version
  /// and instance go and the listing shows the error; else (a stop) only the lease goes.
  void take_down(entry& e, const error_info& why, bool failed) {
    if (failed) {
      e.inst = {};
      e.ver.reset();
    }
    lease_ptr old; // dropped after the lock: it may hold the last reference to an instance
    {
      auto l = reg_.lock();
      auto& g = l[e];
      old = std::move(g.lease);
      g.quiescing = false;
      g.info.serving = false;
      l.changed();
      if (failed) {
        g.info.version.clear();
        record(g, e.name, why);
      }
    }
    release_waiters(e, why);
  }

  /// The listing shows `err` as the plugin's last error.
  void record_error(entry& e, const error_info& err) { record(reg_.lock()[e], e.name, err); }

  /// async_get's slow path: the serving lease, or wait for the reload under way.
  void get(const entry_ptr& e, waiter done) {
    error_info err;
    lease_ptr lease;
    {
      auto l = reg_.lock();
      auto& g = l[*e];
      if (!g.enabled) err = disabled(e->name);
      else if (g.quiescing) return e->waiters.push_back(std::move(done));
      else if (g.lease) lease = g.lease;
      else
        err = fail(errc::plugin_unavailable, e->name,
                   "plugin '" + e->name + "' has no serving version: " +
                       (g.info.last_error ? g.info.last_error->message : std::string("not loaded")) +
                       "; fix it and reload it");
    }
    done(std::move(err), std::move(lease));
  }

  static error_info disabled(const std::string& name) {
    return fail(errc::plugin_disabled, name, "plugin '" + name + "' is disabled; call enable(\"" + name + "\")");
  }

private:
  static void record(guarded_fields& g, const std::string& name, const error_info& err) {
    g.info.last_error = err;
    if (g.info.last_error->plugin.empty()) g.info.last_error->plugin = name;
  }

  // Whether the last plugin_ptr of a withdrawn lease went within the quiesce timeout.
  awaitable<bool> released(std::shared_ptr<release_signal> sig) {
    auto done = std::make_shared<async_event>();
    struct clear_wake {
      std::shared_ptr<release_signal> s;
      ~clear_wake() {
        std::lock_guard lk(s->mu);
        s->wake = nullptr;
      }
    } guard{sig};
    {
      std::lock_guard lk(sig->mu);
      if (sig->released) co_return true;
      sig->wake = [done, s = strand_] { asio::post(s, [done] { done->set(); }); };
    }
    co_await done->wait_until(deadline_after(quiesce_timeout_));
    std::lock_guard lk(sig->mu);
    co_return sig->released;
  }

  void release_waiters(entry& e, const error_info& err) {
    for (auto& w : std::exchange(e.waiters, {})) {
      lease_ptr lease;
      error_info why = err;
      if (!why) {
        auto l = reg_.lock();
        if (!l[e].enabled) why = disabled(e.name);
        else lease = l[e].lease;
      }
      w(std::move(why), std::move(lease));
    }
  }

  registry& reg_;
  strand_t strand_;
  std::chrono::milliseconds quiesce_timeout_;
};

} // namespace hotreload::detail

#endif
