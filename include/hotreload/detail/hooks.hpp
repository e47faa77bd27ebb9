#ifndef HOTRELOAD_DETAIL_HOOKS_HPP
#define HOTRELOAD_DETAIL_HOOKS_HPP

// The plugin hooks: one table of what each is called, what its failure is and how long it
// may take; one runner that calls any of them under its time limit; and the sequences built
// from them (bringing an instance up, taking a snapshot).

#include <hotreload/acceptance.hpp>
#include <hotreload/detail/event_hub.hpp>
#include <hotreload/detail/hook_threads.hpp>
#include <hotreload/detail/keepalive_executor.hpp>
#include <hotreload/detail/policies.hpp>
#include <hotreload/detail/registry.hpp>
#include <hotreload/detail/result.hpp>
#include <hotreload/detail/sync.hpp>
#include <hotreload/detail/versions.hpp>
#include <hotreload/options.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

namespace hotreload::detail {

enum class hook { construct, setup, teardown, on_reload, get_state, set_state, migrate_state, accept };

/// The host's acceptance check, for any interface: (old version or null, new version, the
/// new instance as an Interface*).
using acceptance_fn = std::function<awaitable<verdict>(const plugin_metadata*, const plugin_metadata&, void*)>;

struct hook_spec {
  const char* name;
  errc failure;                                 // when it throws
  std::chrono::milliseconds hook_timeouts::*limit;
  const char* option;                           // that limit, as options.timeouts' field
  const char* fix;                              // appended to the message when it throws
};

inline const hook_spec& spec(hook h) {
  static constexpr hook_spec table[] = {
      {"constructor", errc::construct_failed, &hook_timeouts::construct, "construct", ""},
      {"setup_async", errc::setup_failed, &hook_timeouts::setup, "setup", ""},
      {"teardown_async", errc::teardown_failed, &hook_timeouts::teardown, "teardown", ""},
      {"on_reload_async", errc::reload_hook_failed, &hook_timeouts::on_reload, "on_reload", ""},
      {"get_reload_state", errc::state_save_failed, &hook_timeouts::get_state, "get_state", ""},
      {"set_reload_state", errc::state_restore_failed, &hook_timeouts::set_state, "set_state", ""},
      {"migrate_state", errc::state_migration_failed, &hook_timeouts::set_state, "set_state",
       "; implement migrate_state(from_version, state) to convert it, or keep the state_version"},
      {"the host's acceptance check", errc::not_accepted, &hook_timeouts::accept, "accept", ""},
  };
  return table[static_cast<int>(h)];
}

/// No window: only the hook's own limit applies.
inline constexpr clock::time_point no_window = clock::time_point::max();

class hook_runner {
public:
  hook_runner(const options& o, strand_t s, event_hub& hub, policy_ops& p, registry& r, version_factory& f,
              hook_threads& t)
      : opts_(o), strand_(std::move(s)), hub_(hub), policies_(p), reg_(r), factory_(f), threads_(t) {}

  /// What a call abandoned past its limit reports to when it returns at last (maybe after
  /// the reloader is gone): weak references into the one shared core.
  void set_core(std::weak_ptr<event_hub> hub, std::weak_ptr<registry> reg) {
    weak_hub_ = std::move(hub);
    weak_reg_ = std::move(reg);
  }

  /// Runs one call of plugin code on a hook thread, under its time limit cut to `window`
  /// (the end of what a reload may hold callers). The call's executor keeps `v` mapped, so a
  /// call past its limit (cancelled, and abandoned) keeps its coroutine frame, its instance
  /// and its code alive until it really returns; it is counted in plugin_info meanwhile.
  /// `lead` goes between the plugin's version and the hook's name in the message.
  awaitable<error_info> run(const version_ptr& v, hook h, awaitable<void> op, clock::time_point window = no_window,
                            std::string lead = ":") {
    const auto& name = v->meta.name;
    auto who = "plugin '" + name + "' " + v->meta.version;
    auto own = deadline_after(opts_.timeouts.*spec(h).limit);
    auto until = std::min(own, window);
    auto start = clock::now();
    if (until <= start) co_return out_of_time(who, h, name);
    auto st = std::make_shared<call_state>();
    st->context = threads_.context();
    auto ex = threads_.executor();
    // On the hook thread: the outcome, then the strand is told (if the reloader is still there).
    auto returned = [st, strand = strand_, hub = weak_hub_, reg = weak_reg_, v, h, start](std::exception_ptr e) {
      if (e) st->error = describe(e);
      st->finished.store(true, std::memory_order_release);
      if (hub.expired()) return;
      asio::post(strand, [st, hub, reg, v, h, start] {
        st->done.set();
        if (st->abandoned) report_return(hub, reg, v, h, start);
      });
    };
    asio::co_spawn(asio::any_io_executor(keepalive_executor<hook_threads::executor_type>(ex, v)), std::move(op),
                   asio::bind_cancellation_slot(st->cancel.slot(), std::move(returned)));
    // No co_await inside a condition: g++ 12 does not short-circuit around it.
    bool finished = returned_soon(*st);
    if (!finished) {
      finished = co_await st->done.wait_until(until);
      finished = finished || st->finished.load(std::memory_order_acquire); // it returned just now
    }
    if (!finished) {
      st->abandoned = true;
      asio::post(ex, [st] { st->cancel.emit(asio::cancellation_type::all); }); // where the call runs
      threads_.abandoned();
      hub_.abandoned(+1);
      reg_.count(name, &plugin_info::abandoned_calls, +1);
      auto raise = until == own ? std::string("options.timeouts.") + spec(h).option
                                : std::string("options.max_caller_wait (the longest a reload may hold callers)");
      auto err = fail(errc::hook_timeout, name,
                      who + ": " + spec(h).name + " did not finish within " + whole_ms(until - start) +
                          " and was abandoned (cancelled; its library stays mapped until it returns); never "
                          "block a hook's thread, make it finish sooner, or raise " + raise);
      hub_.emit(event_kind::abandoned, name, nullptr, &v->meta, clock::now() - start, err);
      co_return err;
    }
    if (!st->error.empty())
      co_return fail(spec(h).failure, name, who + lead + " " + spec(h).name + " threw: " + st->error + spec(h).fix);
    co_return error_info{};
  }

  /// The check every new version's instance must pass before it serves (empty: none).
  void set_acceptance_check(acceptance_fn f) {
    std::lock_guard lk(check_mu_);
    check_ = f ? std::make_shared<const acceptance_fn>(std::move(f)) : nullptr;
  }

  /// setup_async, teardown_async or on_reload_async of `inst`, a `v` instance.
  awaitable<error_info> call(const version_ptr& v, const instance& inst, hook h, clock::time_point window = no_window) {
    return run(v, h, lifecycle(inst.object, h), window);
  }

  /// Steps 5-7 of a reload (constructor, state restored, on_reload_async), or a first start
  /// without `old_v` (constructor, saved state if any, setup_async): an instance of `v` ready
  /// to serve.
  awaitable<result<instance>> bring_up(const version_ptr& v, const snapshot_ptr& snapshot,
                                       const version_ptr& old_v, clock::time_point t0,
                                       clock::time_point window = no_window) {
    const auto& name = v->meta.name;
    auto step = [&](reload_step s, std::string_view what) {
      if (old_v) hub_.step(name, s, &old_v->meta, &v->meta, t0, what);
    };
    auto inst = std::make_shared<result<instance>>();
    if (auto err = co_await run(v, hook::construct, factory_.construct(v, inst), window))
      co_return result<instance>{{}, err};
    if (!*inst) co_return std::move(*inst);
    step(reload_step::constructed, "Constructed new instance");
    if (snapshot && policies_.preserves_state()) {
      if (auto err = co_await restore_state(v, inst->value, *snapshot, window)) co_return result<instance>{{}, err};
      step(reload_step::state_restored, "Restored state");
    }
    const hook h = old_v ? hook::on_reload : hook::setup;
    if (auto err = co_await call(v, inst->value, h, window)) co_return result<instance>{{}, err};
    step(reload_step::reload_hook, "Called on_reload_async");
    if (v != old_v) // a new version (not a rollback, nor a rebuild on the same version)
      if (auto err = co_await accept(v, inst->value, old_v, window)) {
        co_await call(v, inst->value, hook::teardown, window); // it came up: it goes down
        co_return result<instance>{{}, err};
      }
    co_return std::move(*inst);
  }

  /// Step 3: the snapshot of `e`'s serving instance (enabled flag, state_version and, with a
  /// state-preserving policy, what get_reload_state returned), stored by the State policy.
  /// What get_reload_state returned is moved, never copied: into the snapshot, which the
  /// reload (for a rollback) and the State policy then share.
  awaitable<result<snapshot_ptr>> snapshot(entry& e, clock::time_point window = no_window) {
    boost::json::object snap;
    snap["enabled"] = reg_.lock()[e].enabled;
    snap["state_version"] = e.ver->meta.state_version;
    if (!policies_.preserves_state())
      co_return result<snapshot_ptr>{std::make_shared<const boost::json::object>(std::move(snap))};
    auto out = std::make_shared<boost::json::value>();
    auto err = co_await run(e.ver, hook::get_state, get_state(e.inst.object, out), window);
    if (!err) snap["custom"] = std::move(*out);
    auto shared = std::make_shared<const boost::json::object>(std::move(snap));
    if (!err) err = policies_.save_state(e.name, shared);
    if (err) err.plugin = e.name;
    co_return result<snapshot_ptr>{std::move(shared), std::move(err)};
  }

private:
  // The host's acceptance check on `inst`, the new `v` about to replace `old_v` (or null).
  awaitable<error_info> accept(const version_ptr& v, const instance& inst, const version_ptr& old_v,
                               clock::time_point window) {
    std::shared_ptr<const acceptance_fn> check;
    {
      std::lock_guard lk(check_mu_);
      check = check_;
    }
    if (!check) co_return error_info{};
    auto answer = std::make_shared<verdict>();
    auto err = co_await run(v, hook::accept, ask(std::move(check), old_v, v, inst, answer), window);
    if (!err && !answer->accepted)
      err = fail(errc::not_accepted, v->meta.name,
                 "plugin '" + v->meta.name + "' " + v->meta.version + " was refused by the host's acceptance check: " +
                     (answer->reason.empty() ? std::string("(no reason given)") : answer->reason));
    if (err) err.code = make_error_code(errc::not_accepted); // a late answer refuses too
    co_return err;
  }
  // Holds both versions and the instance for as long as the check runs (even abandoned).
  static awaitable<void> ask(std::shared_ptr<const acceptance_fn> check, version_ptr old_v, version_ptr v,
                             instance inst, std::shared_ptr<verdict> out) {
    *out = co_await (*check)(old_v ? &old_v->meta : nullptr, v->meta, inst.iface);
  }

  struct call_state {
    // The hook threads' io_context, kept until the call's last trace is gone: the cancel
    // signal's handler holds a strand of it, and may go on the program's thread, late.
    std::shared_ptr<const void> context;
    std::atomic<bool> finished{false}; // set on the hook thread, after `error`
    std::string error;                 // what it threw
    async_event done;                  // strand only: set once the strand knows it returned
    asio::cancellation_signal cancel;  // emitted on the call's own strand
    bool abandoned = false;            // strand only
  };

  // Most calls return within microseconds: the strand waits that long awake, yielding (see
  // hook_threads.hpp), not through a timer and a wake-up; unless the cores are contended.
  bool returned_soon(const call_state& st) const {
    constexpr auto awake = std::chrono::microseconds(100);
    auto t0 = clock::now();
    while (!st.finished.load(std::memory_order_acquire))
      if (threads_.contended() || clock::now() - t0 > awake || !threads_.yield()) return false;
    return true;
  }

  // An abandoned call returned at last: counted, logged, reported.
  static void report_return(const std::weak_ptr<event_hub>& hub, const std::weak_ptr<registry>& reg,
                            const version_ptr& v, hook h, clock::time_point start) {
    const auto& name = v->meta.name;
    if (auto r = reg.lock()) r->count(name, &plugin_info::abandoned_calls, -1);
    auto l = hub.lock();
    if (!l) return;
    l->abandoned(-1);
    l->log(log_level::warning, name,
           "plugin '" + name + "' " + v->meta.version + ": " + spec(h).name + ", abandoned, returned after " +
               ms(clock::now() - start) + "; its library can now be unloaded");
    l->emit(event_kind::returned, name, nullptr, &v->meta, clock::now() - start);
  }

  error_info out_of_time(const std::string& who, hook h, const std::string& name) const {
    return fail(errc::hook_timeout, name,
                who + ": " + spec(h).name + " was not called: the reload or stop had used up options.max_caller_wait (" +
                    std::to_string(opts_.max_caller_wait.count()) + " ms, the longest it may hold callers); make the "
                    "hooks before it finish sooner, or raise it");
  }

  // migrate_state if the snapshot's state_version is not `v`'s, then set_reload_state. The
  // state is copied for the plugin (set_reload_state takes it): the snapshot stays whole for a
  // rollback. The one copy of a state that a reload makes.
  awaitable<error_info> restore_state(const version_ptr& v, const instance& inst, const boost::json::object& snapshot,
                                      clock::time_point window) {
    const auto& name = v->meta.name;
    // Built outside the co_await expression: g++ 12 mishandles temporaries there.
    auto custom = std::make_shared<boost::json::value>();
    if (auto c = snapshot.if_contains("custom")) *custom = *c;
    std::int64_t from = 1;
    if (auto sv = snapshot.if_contains("state_version"); sv && sv->is_int64()) from = sv->get_int64();
    if (from != v->meta.state_version) {
      auto lead = " (state_version " + std::to_string(v->meta.state_version) + ") was given a state of state_version " +
                  std::to_string(from) + " and";
      if (auto err = co_await run(v, hook::migrate_state, migrate(inst.object, from, custom), window, lead)) co_return err;
      hub_.log(log_level::info, name,
               "Migrated state of plugin " + name + " from state_version " + std::to_string(from) + " to " +
                   std::to_string(v->meta.state_version));
    }
    co_return co_await run(v, hook::set_state, set_state(inst.object, std::move(*custom)), window);
  }

  static awaitable<void> lifecycle(std::shared_ptr<plugin> p, hook h) {
    switch (h) {
    case hook::setup: co_await p->setup_async(); break;
    case hook::teardown: co_await p->teardown_async(); break;
    case hook::on_reload: co_await p->on_reload_async(); break;
    default: break;
    }
  }
  static awaitable<void> get_state(std::shared_ptr<plugin> p, std::shared_ptr<boost::json::value> out) {
    *out = co_await p->get_reload_state();
  }
  static awaitable<void> set_state(std::shared_ptr<plugin> p, boost::json::value state) {
    co_await p->set_reload_state(std::move(state));
  }
  static awaitable<void> migrate(std::shared_ptr<plugin> p, std::int64_t from, std::shared_ptr<boost::json::value> state) {
    *state = co_await p->migrate_state(from, std::move(*state));
  }

  const options& opts_;
  strand_t strand_;
  event_hub& hub_;
  policy_ops& policies_;
  registry& reg_;
  version_factory& factory_;
  hook_threads& threads_;
  std::weak_ptr<event_hub> weak_hub_;
  std::weak_ptr<registry> weak_reg_;
  std::mutex check_mu_;
  std::shared_ptr<const acceptance_fn> check_;
};

} // namespace hotreload::detail

#endif
