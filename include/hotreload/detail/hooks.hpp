#ifndef HOTRELOAD_DETAIL_HOOKS_HPP
#define HOTRELOAD_DETAIL_HOOKS_HPP

// The plugin hooks: one table of what each is called, what its failure is and how long it
// may take; one runner that calls any of them under its time limit; and the sequences built
// from them (bringing an instance up, taking a snapshot).

#include <hotreload/acceptance.hpp>
#include <hotreload/detail/engine_types.hpp>
#include <hotreload/detail/event_hub.hpp>
#include <hotreload/detail/hook_threads.hpp>
#include <hotreload/detail/keepalive_executor.hpp>
#include <hotreload/detail/lease_gate.hpp>
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

#include <algorithm>
#include <atomic>
#include <functional>
#include <iterator>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

namespace hotreload::detail {

/// The calls a job on a hook thread makes: the plugin's code, the host's acceptance check, and
/// the two ends of a reload's window (quiesce, publish: the library's own, see lease_gate).
enum class hook { construct, setup, teardown, on_reload, get_state, set_state, migrate_state, accept, quiesce, publish };


struct hook_spec {
  const char* name;
  errc failure;                                 // when it throws
  std::chrono::milliseconds hook_timeouts::*limit; // null: the library's own call, which keeps its own
                                                    // deadline; it is never abandoned nor skipped
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
      {"quiescing", errc::quiesce_timeout, nullptr, "", ""},
      {"publication", errc::plugin_unavailable, nullptr, "", ""},
  };
  return table[static_cast<int>(h)];
}

/// No window: only the hook's own limit applies.
inline constexpr clock::time_point no_window = clock::time_point::max();

class hook_runner {
public:
  hook_runner(const options& o, event_hub& hub, policy_ops& p, registry& r, version_factory& f, hook_threads& t)
      : opts_(o), hub_(hub), policies_(p), reg_(r), factory_(f), threads_(t) {}

  /// What a call abandoned past its limit reports to when it returns at last (maybe after
  /// the reloader is gone): weak references into the one shared core.
  void set_core(std::weak_ptr<event_hub> hub, std::weak_ptr<registry> reg, std::shared_ptr<strand_mailbox> mail) {
    weak_hub_ = std::move(hub);
    weak_reg_ = std::move(reg);
    mail_ = std::move(mail);
  }

  /// One call of plugin code in a sequence (see in_turn): made when its turn comes, so that
  /// it can use what the calls before it produced; false ends the sequence there without an
  /// error (the caller looks at what the call produced).
  struct hook_call {
    hook_call(hook hk, std::function<awaitable<bool>()> m, std::string l = ":")
        : h(hk), make(std::move(m)), lead(std::move(l)) {}
    hook h;
    std::function<awaitable<bool>()> make;
    std::string lead; // between the plugin's version and the hook's name in the message
    version_ptr code;       // whose code it runs, if not the sequence's version
    clock::time_point window = no_window; // its own end, if sooner than the sequence's
    bool goes_on = false;   // if it throws, that is reported (turn::went_on) and the next call made
  };

  /// What a sequence of calls came to.
  struct turn {
    error_info error;                     // why it ended early: a call threw, was late or was not made
    std::size_t at = 0;                   // that call (when `error`)
    std::vector<clock::time_point> ended; // when each call that was made returned
    std::vector<error_info> went_on;      // per call: what a `goes_on` call threw
  };

  /// Runs one call of plugin code on a hook thread, under its time limit cut to `window`
  /// (the end of what a reload may hold callers). The call's executor keeps `v` mapped, so a
  /// call past its limit (cancelled, and abandoned) keeps its coroutine frame, its instance
  /// and its code alive until it really returns; it is counted in plugin_info meanwhile.
  awaitable<error_info> run(const version_ptr& v, hook h, awaitable<void> op, clock::time_point window = no_window,
                            std::string lead = ":") {
    auto once = std::make_shared<awaitable<void>>(std::move(op));
    std::vector<hook_call> calls;
    calls.push_back({h, [once]() -> awaitable<bool> { co_await std::move(*once); co_return true; }, std::move(lead)});
    co_return (co_await in_turn(v, std::move(calls), window)).error;
  }

  /// Runs `calls` (all on `v`'s code) one after the other on a hook thread, as one job: one
  /// hand-off between the strand and the hook thread for all of them, where each call would
  /// cost one (a wake-up each way when the cores are busy). Each call still has its own time
  /// limit, from its own start (and its own window, if sooner): the strand sleeps until the
  /// limit of the call under way, or sooner if a later call could be due before that, and
  /// then looks again at the call under way.
  /// The first call that throws (unless it `goes_on`) or is late ends the sequence (a late one
  /// is abandoned as run() says, and the calls after it are not made).
  awaitable<turn> in_turn(const version_ptr& v, std::vector<hook_call> calls, clock::time_point window = no_window) {
    const auto& name = v->meta.name;
    turn out;
    if (calls.empty()) co_return out;
    auto st = std::make_shared<call_state>(calls.size());
    std::vector<hook> hooks; // `calls` goes to the hook thread; what the messages need stays
    std::vector<std::string> leads;
    std::vector<version_ptr> whose;
    for (std::size_t i = 0; i < calls.size(); ++i) {
      hooks.push_back(calls[i].h);
      leads.push_back(std::move(calls[i].lead));
      whose.push_back(calls[i].code ? calls[i].code : v);
      st->windows[i] = spec(calls[i].h).limit ? std::min(window, calls[i].window) : no_window;
    }
    auto who = [&](std::size_t i) { return "plugin '" + name + "' " + whose[i]->meta.version; };
    auto limit = [&](std::size_t i) {
      auto own = spec(hooks[i]).limit;
      return own ? opts_.timeouts.*own : std::chrono::milliseconds::max();
    };
    if (st->windows[0] <= clock::now()) {
      out.error = out_of_time(who(0), hooks[0], name);
      co_return out;
    }
    st->context = threads_.context();
    auto ex = threads_.executor();
    // On the hook thread: the outcome, then the strand is told (if the reloader is still there).
    auto returned = [st, mail = mail_, hub = weak_hub_, reg = weak_reg_, hooks, v](std::exception_ptr e) {
      if (e && st->error.empty()) st->error = describe(e);
      st->finished.store(true, std::memory_order_release);
      if (hub.expired()) return;
      mail->post([st, hub, reg, hooks, v] {
        st->done.set();
        if (st->abandoned) report_return(hub, reg, *st, hooks[st->at_abandon]);
      });
    };
    // The job's executor keeps every version whose code it runs mapped: code of the old version
    // may still be queued on it (Asio's, or the plugin's) after its teardown returned.
    std::shared_ptr<const void> keep = v;
    int held = 1;
    if (std::any_of(whose.begin(), whose.end(), [&](auto& w) { return w != v; })) {
      keep = std::make_shared<const std::vector<version_ptr>>(whose);
      held = 2;
    }
    asio::co_spawn(asio::any_io_executor(keepalive_executor<hook_threads::executor_type>(ex, std::move(keep))),
                   sequence(st, std::move(calls)), asio::bind_cancellation_slot(st->cancel.slot(), std::move(returned)));
    // No co_await inside a condition: g++ 12 does not short-circuit around it.
    bool finished = returned_soon(*st);
    std::size_t at = 0;
    clock::time_point since, until, own;
    auto limit_from = [&](clock::time_point from, std::size_t i) { // no overflow past time_point::max()
      return from + std::min(limit(i), std::chrono::duration_cast<std::chrono::milliseconds>(clock::time_point::max() - from));
    };
    while (!finished) {
      std::tie(at, since) = st->current();
      own = limit_from(since, at);
      until = std::min(own, st->windows[at]);
      auto now = clock::now();
      if (now >= until) {
        finished = st->finished.load(std::memory_order_acquire); // it returned just now
        if (finished) break;
        // Late, unless the job has just moved on: then the next call has its own limit. One
        // exchange decides, so the job never starts a call after the strand gave up on it.
        auto expected = at;
        if (st->at.compare_exchange_strong(expected, at | call_state::given_up, std::memory_order_acq_rel)) break;
        continue;
      }
      // A later call may start any moment, with a shorter limit: wake by the soonest it could
      // be due too (only a call that runs that long costs a wake-up more). None starts past
      // its window.
      auto wake = until;
      for (auto j = at + 1; j < hooks.size() && st->windows[j] > now; ++j)
        if (auto soonest = std::min(limit_from(now, j), st->windows[j]); soonest > now) wake = std::min(wake, soonest);
      finished = co_await st->done.wait_until(wake);
    }
    if (!finished) {
      // The calls before the late one were made: what they did stands (`at` was published
      // after their ends).
      collect(out, *st, at, hooks, leads, who, name);
      st->abandoned = true;
      st->at_abandon = at;
      st->held = held; // the versions the job's executor keeps
      st->abandoned_code = whose[at]->meta;
      st->since_abandon = since;
      asio::post(ex, [st] { st->cancel.emit(asio::cancellation_type::all); }); // where the call runs
      threads_.abandoned();
      hub_.abandoned(st->held);
      reg_.count(name, &plugin_info::abandoned_calls, +1);
      const auto h = hooks[at];
      auto raise = until == own ? std::string("options.timeouts.") + spec(h).option
                                : std::string("options.max_caller_wait (the longest a reload may hold callers)");
      out.at = at;
      out.error = fail(errc::hook_timeout, name,
                       who(at) + ": " + spec(h).name + " did not finish within " + whole_ms(until - since) +
                           " and was abandoned (cancelled; its library stays mapped until it returns); never "
                           "block a hook's thread, make it finish sooner, or raise " + raise);
      hub_.emit(event_kind::abandoned, name, nullptr, &whose[at]->meta, clock::now() - since, out.error);
      co_return out;
    }
    collect(out, *st, st->made, hooks, leads, who, name);
    out.at = st->failed;
    if (st->skipped) out.error = out_of_time(who(st->failed), hooks[st->failed], name);
    else if (!st->error.empty()) out.error = threw(who(st->failed) + leads[st->failed], hooks[st->failed], st->error, name);
    co_return out;
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

  /// Calls made in the same job as a bring_up's own, just before them (a reload of one
  /// plugin: quiescing, the old instance's snapshot and teardown): one hand-off to the hook
  /// thread and back for all. `done` gets what they came to (the turn, cut to them) before
  /// bring_up reports its own steps, and says what ends bring_up there (nothing: it goes on).
  /// When one of them ended the sequence, bring_up's calls were not made; if `done` lets it
  /// go on, they go in a job of their own.
  /// With `publish_to`, the job's last call publishes the new instance (lease_gate::publish,
  /// as `how`) the moment the host's acceptance check passed, without a hand-off back to the
  /// strand first; `*published` is when (left at its default if it was not).
  struct prelude {
    std::vector<hook_call> calls;
    std::function<error_info(const turn&)> done;
    entry_ptr publish_to;
    publication how = publication::reloaded;
    std::shared_ptr<clock::time_point> published;
  };

  /// Step 2 of a reload in its job: lease_gate::withdraw, then lease_gate::released, waiting
  /// (on the job's executor, the hook thread free meanwhile) until `until` at most. If
  /// plugin_ptrs are still held then, `*failure` says so and the job ends there: the gate
  /// stays closed for the strand to reopen.
  hook_call quiesce_call(entry_ptr e, clock::time_point until, std::shared_ptr<error_info> failure) const {
    return hook_call(hook::quiesce, [reg = weak_reg_, e = std::move(e), until, failure]() -> awaitable<bool> {
      auto start = clock::now();
      bool closed = false;
      if (auto r = reg.lock()) {
        auto sig = lease_gate::withdraw(*r, *e);
        r.reset(); // nothing of the reloader's is held across the wait
        closed = co_await lease_gate::released(std::move(sig), until);
      }
      if (!closed) *failure = lease_gate::still_held(e->name, clock::now() - start);
      co_return closed;
    });
  }

  /// teardown_async of `inst`, a `v` instance, within `window`, for a prelude: what it throws
  /// is reported (turn::went_on) and the calls after it are made.
  static hook_call teardown_call(const version_ptr& v, const instance& inst, clock::time_point window) {
    hook_call c(hook::teardown, [p = inst.object]() mutable -> awaitable<bool> {
      auto old = std::move(p); // the job keeps no reference once the call returned
      co_await lifecycle(std::move(old), hook::teardown);
      co_return true;
    });
    c.code = v;
    c.window = window;
    c.goes_on = true;
    return c;
  }

  /// Steps 5-7 of a reload (constructor, state restored, on_reload_async), or a first start
  /// without `old_v` (constructor, saved state if any, setup_async), then the host's
  /// acceptance check for a new version: an instance of `v` ready to serve. The calls go to
  /// the hook thread as one job (in_turn); their steps are reported once it is back, each
  /// with the time it was done.
  awaitable<result<instance>> bring_up(const version_ptr& v, const snapshot_ptr& snapshot,
                                       const version_ptr& old_v, clock::time_point t0,
                                       clock::time_point window = no_window, prelude* before = nullptr) {
    const auto& name = v->meta.name;
    auto inst = std::make_shared<result<instance>>();
    std::vector<hook_call> calls;
    const std::size_t first = before ? before->calls.size() : 0; // bring_up's own first call
    if (before) std::move(before->calls.begin(), before->calls.end(), std::back_inserter(calls));
    std::vector<std::pair<reload_step, const char*>> steps; // reported after each call
    // The plugin's context is made here, on the strand; the factory runs in the job.
    auto construct = std::make_shared<awaitable<void>>(factory_.construct(v, inst));
    calls.push_back({hook::construct, [construct, inst]() -> awaitable<bool> {
                       co_await std::move(*construct);
                       co_return static_cast<bool>(*inst);
                     }});
    steps.emplace_back(reload_step::constructed, "Constructed new instance");
    std::int64_t from = v->meta.state_version;
    if (snapshot && policies_.preserves_state()) {
      if (auto sv = snapshot->if_contains("state_version"); sv && sv->is_int64()) from = sv->get_int64();
      else from = 1;
      add_restore(calls, steps, v, inst, snapshot, from);
    }
    const hook h = old_v ? hook::on_reload : hook::setup;
    calls.push_back({h, [inst, h]() -> awaitable<bool> {
                       co_await lifecycle(inst->value.object, h);
                       co_return true;
                     }});
    steps.emplace_back(reload_step::reload_hook, "Called on_reload_async");
    auto check = acceptance_check();
    auto answer = std::make_shared<verdict>();
    bool asks = check && v != old_v; // a new version (not a rollback, nor a rebuild on the same version)
    if (asks)
      calls.push_back({hook::accept, [check, old_v, v, inst, answer]() -> awaitable<bool> {
                         co_await ask(check, old_v, v, inst->value, answer);
                         co_return answer->accepted; // refused: not published
                       }});
    if (before && before->publish_to)
      calls.push_back({hook::publish, [reg = weak_reg_, e = before->publish_to, v, inst, how = before->how,
                                       at = before->published]() -> awaitable<bool> {
                         if (auto r = reg.lock()) {
                           lease_gate::publish(*r, *e, v, inst->value, how);
                           *at = clock::now();
                         }
                         co_return true;
                       }});
    auto t = co_await in_turn(v, std::move(calls), window);
    auto& ended = t.ended;
    if (before) {
      const bool stopped = t.error && t.at < first;
      if (auto err = before->done(t)) co_return result<instance>{{}, std::move(err)};
      if (stopped) co_return co_await bring_up(v, snapshot, old_v, t0, window);
      ended.erase(ended.begin(), ended.begin() + static_cast<std::ptrdiff_t>(first));
    }
    auto err = t.error;
    for (std::size_t i = 0; i < ended.size() && *inst; ++i) { // none if the constructor failed
      if (i == steps.size()) break; // the acceptance check has no step
      if (steps[i].first == reload_step::none) continue;
      if (steps[i].first == reload_step::state_restored && from != v->meta.state_version)
        hub_.log(log_level::info, name,
                 "Migrated state of plugin " + name + " from state_version " + std::to_string(from) + " to " +
                     std::to_string(v->meta.state_version));
      if (old_v) hub_.step(name, steps[i].first, &old_v->meta, &v->meta, t0, steps[i].second, ended[i]);
    }
    if (!err && !*inst) co_return std::move(*inst); // the constructor failed
    if (!err && asks && !answer->accepted)
      err = fail(errc::not_accepted, name,
                 "plugin '" + name + "' " + v->meta.version + " was refused by the host's acceptance check: " +
                     (answer->reason.empty() ? std::string("(no reason given)") : answer->reason));
    if (err && asks && ended.size() >= steps.size()) { // from the check: everything before it was made
      err.code = make_error_code(errc::not_accepted); // a late answer refuses too
      co_await call(v, inst->value, hook::teardown, window); // it came up: it goes down
    }
    if (err) co_return result<instance>{{}, err};
    co_return std::move(*inst);
  }

  /// Step 3: the snapshot of `e`'s serving instance (enabled flag, state_version and, with a
  /// state-preserving policy, what get_reload_state returned), stored by the State policy.
  /// What get_reload_state returned is moved, never copied: into the snapshot, which the
  /// reload (for a rollback) and the State policy then share.
  awaitable<result<snapshot_ptr>> snapshot(entry& e, clock::time_point window = no_window) {
    auto snap = snapshot_frame(e);
    error_info err;
    if (policies_.preserves_state()) {
      std::vector<hook_call> calls;
      calls.push_back(snapshot_call(e, snap, window));
      err = (co_await in_turn(e.ver, std::move(calls))).error;
      if (!err) err = policies_.save_state(e.name, snap);
      if (err) err.plugin = e.name;
    }
    co_return result<snapshot_ptr>{std::move(snap), std::move(err)};
  }

  /// A snapshot of `e` but for what get_reload_state returns: with a state-preserving policy,
  /// its "custom" is null until snapshot_call fills it.
  std::shared_ptr<boost::json::object> snapshot_frame(entry& e) {
    auto snap = std::make_shared<boost::json::object>();
    (*snap)["enabled"] = reg_.lock()[e].enabled;
    (*snap)["state_version"] = e.ver->meta.state_version;
    if (policies_.preserves_state()) (*snap)["custom"] = nullptr;
    return snap;
  }

  /// get_reload_state of `e`'s serving instance, within `window`, into `snap`'s "custom" (a
  /// frame's): on the hook thread, where the calls after it in the same job may read it.
  static hook_call snapshot_call(const entry& e, std::shared_ptr<boost::json::object> snap, clock::time_point window) {
    hook_call c(hook::get_state, [p = e.inst.object, snap]() mutable -> awaitable<bool> {
      auto self = std::move(p); // the job keeps no reference once the call returned
      auto state = co_await self->get_reload_state();
      snap->at("custom") = std::move(state);
      co_return true;
    });
    c.code = e.ver;
    c.window = window;
    return c;
  }

private:
  std::shared_ptr<const acceptance_fn> acceptance_check() {
    std::lock_guard lk(check_mu_);
    return check_;
  }
  // Holds both versions and the instance for as long as the check runs (even abandoned).
  static awaitable<void> ask(std::shared_ptr<const acceptance_fn> check, version_ptr old_v, version_ptr v,
                             instance inst, std::shared_ptr<verdict> out) {
    *out = co_await (*check)(old_v ? &old_v->meta : nullptr, v->meta, inst.iface);
  }

  struct call_state {
    explicit call_state(std::size_t n) : windows(n), thrown(n), ended(n) {}
    // The hook threads' io_context, kept until the call's last trace is gone: the cancel
    // signal's handler holds a strand of it, and may go on the program's thread, late.
    std::shared_ptr<const void> context;
    std::vector<clock::time_point> windows; // each call's end (no later than the sequence's)
    std::vector<std::string> thrown;        // what each `goes_on` call threw
    // Which call is under way and since when: written by the hook thread, `at` last; read by
    // the strand, `at` first and again after `since` (so the two belong together). The strand
    // marks the call it abandons (`given_up`), and the job then makes no more.
    static constexpr std::size_t given_up = std::size_t(1) << (sizeof(std::size_t) * 8 - 1);
    std::atomic<std::size_t> at{0};
    std::atomic<clock::rep> since{clock::now().time_since_epoch().count()};
    std::atomic<bool> finished{false}; // set on the hook thread, after everything below
    std::string error;                 // what the failed call threw
    std::size_t failed = 0;            // which call threw, or was not made (skipped)
    bool skipped = false;              // the window was over before its turn
    std::size_t made = 0;              // calls that returned
    std::vector<clock::time_point> ended;
    async_event done;                  // strand only: set once the strand knows it returned
    asio::cancellation_signal cancel;  // emitted on the call's own strand
    bool abandoned = false;            // strand only, and what follows
    std::size_t at_abandon = 0;
    int held = 0;                      // versions the abandoned job keeps mapped
    plugin_metadata abandoned_code;    // whose code the abandoned call runs
    clock::time_point since_abandon;

    std::pair<std::size_t, clock::time_point> current() const {
      for (;;) {
        auto i = at.load(std::memory_order_acquire);
        auto t = since.load(std::memory_order_acquire);
        if (at.load(std::memory_order_acquire) == i) return {i, clock::time_point(clock::duration(t))};
      }
    }
  };

  // The job on the hook thread: the calls in turn, each marked as under way while it runs.
  static awaitable<void> sequence(std::shared_ptr<call_state> st, std::vector<hook_call> calls) {
    for (std::size_t i = 0; i < calls.size(); ++i) {
      auto now = clock::now();
      if (i > 0) {
        if (now >= st->windows[i]) {
          st->failed = i;
          st->skipped = true;
          co_return;
        }
        st->since.store(now.time_since_epoch().count(), std::memory_order_release);
        auto expected = i - 1;
        if (!st->at.compare_exchange_strong(expected, i, std::memory_order_acq_rel)) co_return; // given up
      }
      bool more = true;
      try {
        more = co_await calls[i].make();
      } catch (...) {
        if (!calls[i].goes_on) {
          st->failed = i;
          st->error = describe(std::current_exception());
          co_return;
        }
        st->thrown[i] = describe(std::current_exception());
      }
      st->ended[i] = clock::now();
      st->made = i + 1;
      if (!more) co_return;
    }
  }

  // Most calls return within microseconds: the strand waits that long awake, yielding (see
  // hook_threads.hpp), not through a timer and a wake-up; unless the cores are contended.
  bool returned_soon(const call_state& st) const {
    constexpr auto awake = std::chrono::microseconds(100);
    auto t0 = clock::now();
    while (!st.finished.load(std::memory_order_acquire))
      if (threads_.contended() || clock::now() - t0 > awake || !threads_.yield()) return false;
    return true;
  }

  // The calls before `made` returned: when, and what those that went on threw.
  template <class Who>
  static void collect(turn& out, const call_state& st, std::size_t made, const std::vector<hook>& hooks,
                      const std::vector<std::string>& leads, const Who& who, const std::string& name) {
    out.ended.assign(st.ended.begin(), st.ended.begin() + static_cast<std::ptrdiff_t>(made));
    out.went_on.resize(hooks.size());
    for (std::size_t i = 0; i < made; ++i)
      if (!st.thrown[i].empty()) out.went_on[i] = threw(who(i) + leads[i], hooks[i], st.thrown[i], name);
  }

  static error_info threw(const std::string& who, hook h, const std::string& what, const std::string& name) {
    return fail(spec(h).failure, name, who + " " + spec(h).name + " threw: " + what + spec(h).fix);
  }

  // An abandoned call returned at last: counted, logged, reported.
  static void report_return(const std::weak_ptr<event_hub>& hub, const std::weak_ptr<registry>& reg,
                            const call_state& st, hook h) {
    const auto& m = st.abandoned_code;
    if (auto r = reg.lock()) r->count(m.name, &plugin_info::abandoned_calls, -1);
    auto l = hub.lock();
    if (!l) return;
    l->abandoned(-st.held);
    l->log(log_level::warning, m.name,
           "plugin '" + m.name + "' " + m.version + ": " + spec(h).name + ", abandoned, returned after " +
               ms(clock::now() - st.since_abandon) + "; its library can now be unloaded");
    l->emit(event_kind::returned, m.name, nullptr, &m, clock::now() - st.since_abandon);
  }

  error_info out_of_time(const std::string& who, hook h, const std::string& name) const {
    return fail(errc::hook_timeout, name,
                who + ": " + spec(h).name + " was not called: the reload or stop had used up options.max_caller_wait (" +
                    std::to_string(opts_.max_caller_wait.count()) + " ms, the longest it may hold callers); make the "
                    "hooks before it finish sooner, or raise it");
  }

  // The calls that restore the snapshot's state into the new instance: migrate_state if its
  // state_version (`from`) is not `v`'s, then adopt_reload_state. The plugin is given the
  // snapshot's own state, shared and immutable (the snapshot stays whole for a rollback and
  // the State policy): no copy, unless the plugin asks for one (set_reload_state, the
  // default) or a migration needs one (migrate_state takes its state by value).
  static void add_restore(std::vector<hook_call>& calls, std::vector<std::pair<reload_step, const char*>>& steps,
                          const version_ptr& v, const std::shared_ptr<result<instance>>& inst,
                          const snapshot_ptr& snapshot, std::int64_t from) {
    std::shared_ptr<const boost::json::value> state;
    if (auto c = snapshot->if_contains("custom")) state = std::shared_ptr<const boost::json::value>(snapshot, c);
    else state = std::make_shared<const boost::json::value>();
    if (from != v->meta.state_version) {
      auto migrated = std::make_shared<boost::json::value>();
      calls.push_back({hook::migrate_state,
                       [inst, state, migrated, from]() -> awaitable<bool> {
                         *migrated = *state; // on the hook thread
                         co_await migrate(inst->value.object, from, migrated);
                         co_return true;
                       },
                       " (state_version " + std::to_string(v->meta.state_version) +
                           ") was given a state of state_version " + std::to_string(from) + " and"});
      steps.emplace_back(reload_step::none, "");
      state = migrated;
    }
    calls.push_back({hook::set_state, [inst, state]() -> awaitable<bool> {
                       co_await adopt(inst->value.object, state);
                       co_return true;
                     }});
    steps.emplace_back(reload_step::state_restored, "Restored state");
  }

  static awaitable<void> lifecycle(std::shared_ptr<plugin> p, hook h) {
    switch (h) {
    case hook::setup: co_await p->setup_async(); break;
    case hook::teardown: co_await p->teardown_async(); break;
    case hook::on_reload: co_await p->on_reload_async(); break;
    default: break;
    }
  }
  static awaitable<void> adopt(std::shared_ptr<plugin> p, std::shared_ptr<const boost::json::value> state) {
    co_await p->adopt_reload_state(std::move(state));
  }
  static awaitable<void> migrate(std::shared_ptr<plugin> p, std::int64_t from, std::shared_ptr<boost::json::value> state) {
    *state = co_await p->migrate_state(from, std::move(*state));
  }

  const options& opts_;
  event_hub& hub_;
  policy_ops& policies_;
  registry& reg_;
  version_factory& factory_;
  hook_threads& threads_;
  std::weak_ptr<event_hub> weak_hub_;
  std::weak_ptr<registry> weak_reg_;
  std::shared_ptr<strand_mailbox> mail_; // the strand, for a call that returns late
  std::mutex check_mu_;
  std::shared_ptr<const acceptance_fn> check_;
};

} // namespace hotreload::detail

#endif
