#ifndef HOTRELOAD_DETAIL_LEASE_GATE_HPP
#define HOTRELOAD_DETAIL_LEASE_GATE_HPP

// The lease gate: the one place that writes what callers are handed (an entry's lease and
// its quiescing flag) and that answers the callers waiting for a reload to end. Strand only,
// but for its static members (withdraw, released, publish), which a reload's job on a hook
// thread calls too: what callers see changes under the registry's mutex.

#include <hotreload/detail/registry.hpp>
#include <hotreload/detail/result.hpp>
#include <hotreload/detail/sync.hpp>
#include <hotreload/options.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

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
  lease_gate(registry& r, strand_t s, const options& o) : reg_(r), strand_(std::move(s)), opts_(o) {}

  /// `v` and `inst` become the entry's serving version; callers get them from now on.
  void install(entry& e, version_ptr v, instance inst, publication how) {
    publish(reg_, e, v, inst, how);
    installed(e, std::move(v), std::move(inst));
  }
  /// The strand's part of install, once `v` and `inst` were published (by a reload's job):
  /// they become the entry's, and the callers waiting for the reload get them.
  void installed(entry& e, version_ptr v, instance inst) {
    e.ver = std::move(v);
    e.inst = std::move(inst);
    release_waiters(e, {});
  }
  /// The serving instance again, after a reload that failed before touching it.
  void resume(entry& e) { install(e, e.ver, e.inst, publication::resumed); }

  /// Any thread: install's part that callers see. try_get hands out `inst` of `v` from now on
  /// (a reload's job calls it the moment its new instance is ready; callers waiting in
  /// async_get are answered by installed(), on the strand).
  static void publish(registry& reg, entry& e, const version_ptr& v, const instance& inst, publication how) {
    lease_ptr old; // dropped after the lock: it may hold the last reference to an instance
    auto l = reg.lock();
    auto& g = l[e];
    old = std::exchange(g.lease, std::make_shared<lease_block>(inst, v));
    g.quiescing = false;
    l.changed();
    if (how != publication::resumed) {
      g.info.version = v->meta.version;
      g.info.state_version = v->meta.state_version;
      g.info.serving = true;
      g.info.loaded_at = std::chrono::system_clock::now();
    }
    if (how == publication::reloaded) ++g.info.reloads;
  }

  /// No new caller gets the serving version, and every plugin_ptr to it is released. Past
  /// options.quiesce_timeout (or `window`) the step fails; with `restore`, the version then
  /// serves again.
  awaitable<error_info> quiesce(entry& e, bool restore, clock::time_point window) {
    auto start = clock::now();
    auto until = std::min(deadline_after(opts_.quiesce_timeout), window);
    std::weak_ptr<lease_block> held;
    if (co_await released(withdraw(reg_, e, &held), until)) co_return error_info{};
    if (restore) {
      {
        auto l = reg_.lock();
        l[e].lease = held.lock();
        l[e].quiescing = false;
        l.changed();
      }
      release_waiters(e, {});
    }
    co_return still_held(e.name, until - start);
  }

  /// Any thread: quiesce's first part. No new caller gets the serving version; what tells
  /// when every plugin_ptr to it is released (null: none was handed out), for released().
  /// The withdrawn lease is `*held`, to restore it if they are not released in time.
  static std::shared_ptr<release_signal> withdraw(registry& reg, entry& e, std::weak_ptr<lease_block>* held = nullptr) {
    lease_ptr mine; // dropped after the lock: it may be the last reference
    {
      auto l = reg.lock();
      l[e].quiescing = true;
      mine = std::move(l[e].lease);
      l.changed();
    }
    if (!mine) return nullptr;
    if (held) *held = mine;
    return mine->signal;
  }

  /// Any executor that runs one handler at a time (the strand, a reload's job): whether the
  /// last plugin_ptr of a withdrawn lease (`sig`, from withdraw) went before `until`. The
  /// lease's last holder posts the answer to the executor this runs on, which is free
  /// meanwhile. Holds nothing of the reloader's while it waits.
  static awaitable<bool> released(std::shared_ptr<release_signal> sig, clock::time_point until) {
    if (!sig) co_return true;
    auto ex = co_await asio::this_coro::executor;
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
      sig->wake = [done, ex] { asio::post(ex, [done] { done->set(); }); };
    }
    co_await done->wait_until(until);
    std::lock_guard lk(sig->mu);
    co_return sig->released;
  }

  /// Why quiesce failed after `waited`.
  static error_info still_held(const std::string& name, clock::duration waited) {
    return fail(errc::quiesce_timeout, name,
                "plugin '" + name + "': plugin_ptrs to the old version were still held after " + whole_ms(waited) +
                    "; hold plugin_ptrs per request, not for long, or raise options.quiesce_timeout (and "
                    "options.max_caller_wait)");
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

  /// async_get's slow path: the serving lease, or wait for the reload under way, at most
  /// options.max_caller_wait.
  void get(const entry_ptr& e, waiter done) {
    error_info err;
    lease_ptr lease;
    {
      auto l = reg_.lock();
      auto& g = l[*e];
      if (!g.enabled) err = disabled(e->name);
      else if (g.quiescing) return wait(*e, std::move(done));
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

  // `done` is answered by the end of the reload or stop under way, or at its time limit,
  // whichever comes first.
  void wait(entry& e, waiter done) {
    auto once = std::make_shared<waiter>(std::move(done));
    auto timer = std::make_shared<asio::steady_timer>(strand_, deadline_after(opts_.max_caller_wait));
    timer->async_wait([once, timer, name = e.name, limit = opts_.max_caller_wait](boost::system::error_code ec) {
      if (ec || !*once) return;
      std::exchange(*once, nullptr)(
          fail(errc::caller_wait_timeout, name,
               "plugin '" + name + "' was being reloaded or stopped for longer than " + std::to_string(limit.count()) +
                   " ms (options.max_caller_wait); call again: the old version serves again once it is back"),
          nullptr);
    });
    e.waiters.push_back([once, timer](error_info err, lease_ptr lease) {
      timer->cancel();
      if (*once) std::exchange(*once, nullptr)(std::move(err), std::move(lease));
    });
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
  const options& opts_;
};

} // namespace hotreload::detail

#endif
