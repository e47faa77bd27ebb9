#ifndef HOTRELOAD_DETAIL_HOOKS_HPP
#define HOTRELOAD_DETAIL_HOOKS_HPP

// The plugin hooks: one table of what each is called, what its failure is and how long it
// may take; one runner that calls any of them under its time limit; and the sequences built
// from them (bringing an instance up, taking a snapshot).

#include <hotreload/detail/event_hub.hpp>
#include <hotreload/detail/keepalive_executor.hpp>
#include <hotreload/detail/policies.hpp>
#include <hotreload/detail/registry.hpp>
#include <hotreload/detail/result.hpp>
#include <hotreload/detail/sync.hpp>
#include <hotreload/detail/versions.hpp>
#include <hotreload/options.hpp>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <optional>
#include <string>

namespace hotreload::detail {

enum class hook { setup, teardown, on_reload, get_state, set_state, migrate_state };

struct hook_spec {
  const char* name;
  errc failure;                                 // when it throws
  std::chrono::milliseconds hook_timeouts::*limit;
  const char* fix;                              // appended to the message when it throws
};

inline const hook_spec& spec(hook h) {
  static constexpr hook_spec table[] = {
      {"setup_async", errc::setup_failed, &hook_timeouts::setup, ""},
      {"teardown_async", errc::teardown_failed, &hook_timeouts::teardown, ""},
      {"on_reload_async", errc::reload_hook_failed, &hook_timeouts::on_reload, ""},
      {"get_reload_state", errc::state_save_failed, &hook_timeouts::get_state, ""},
      {"set_reload_state", errc::state_restore_failed, &hook_timeouts::set_state, ""},
      {"migrate_state", errc::state_migration_failed, &hook_timeouts::set_state,
       "; implement migrate_state(from_version, state) to convert it, or keep the state_version"},
  };
  return table[static_cast<int>(h)];
}

class hook_runner {
public:
  hook_runner(const options& o, strand_t s, event_hub& hub, policy_ops& p, registry& r, version_factory& f)
      : opts_(o), strand_(std::move(s)), hub_(hub), policies_(p), reg_(r), factory_(f) {}

  /// Runs one hook under its time limit. The hook runs on an executor that keeps `v` mapped,
  /// so after a timeout (the hook is cancelled and abandoned) its coroutine frame, its
  /// instance and its code stay alive until it really finishes. `lead` goes between the
  /// plugin's version and the hook's name in the message.
  awaitable<error_info> run(const version_ptr& v, hook h, awaitable<void> op, std::string lead = ":") {
    struct state {
      async_event done;
      asio::cancellation_signal cancel;
      std::string error;
    };
    auto st = std::make_shared<state>();
    auto limit = opts_.timeouts.*spec(h).limit;
    asio::co_spawn(asio::any_io_executor(keepalive_executor<strand_t>(strand_, v)), std::move(op),
                   asio::bind_cancellation_slot(st->cancel.slot(), [st](std::exception_ptr e) {
                     if (e) st->error = describe(e);
                     st->done.set();
                   }));
    bool finished = co_await st->done.wait_until(deadline_after(limit));
    const auto& name = v->meta.name;
    auto who = "plugin '" + name + "' " + v->meta.version;
    if (!finished) {
      st->cancel.emit(asio::cancellation_type::all);
      co_return fail(errc::hook_timeout, name,
                     who + ": " + spec(h).name + " did not finish within " + std::to_string(limit.count()) +
                         " ms and was cancelled (its library stays mapped until it ends); make it finish sooner or "
                         "raise options.timeouts");
    }
    if (!st->error.empty())
      co_return fail(spec(h).failure, name, who + lead + " " + spec(h).name + " threw: " + st->error + spec(h).fix);
    co_return error_info{};
  }

  /// setup_async, teardown_async or on_reload_async of `inst`, a `v` instance.
  awaitable<error_info> call(const version_ptr& v, const instance& inst, hook h) {
    return run(v, h, lifecycle(inst.object, h));
  }

  /// Steps 5-7 of a reload (constructor, state restored, on_reload_async), or a first start
  /// without `old_v` (constructor, saved state if any, setup_async): an instance of `v` ready
  /// to serve.
  awaitable<result<instance>> bring_up(const version_ptr& v, const std::optional<boost::json::object>& snapshot,
                                       const version_ptr& old_v, clock::time_point t0) {
    const auto& name = v->meta.name;
    auto step = [&](reload_step s, std::string_view what) {
      if (old_v) hub_.step(name, s, &old_v->meta, &v->meta, t0, what);
    };
    auto inst = factory_.construct(v);
    if (!inst) co_return inst;
    step(reload_step::constructed, "Constructed new instance");
    if (snapshot && policies_.preserves_state()) {
      if (auto err = co_await restore_state(v, inst.value, *snapshot)) co_return result<instance>{{}, err};
      step(reload_step::state_restored, "Restored state");
    }
    const hook h = old_v ? hook::on_reload : hook::setup;
    if (auto err = co_await call(v, inst.value, h)) co_return result<instance>{{}, err};
    step(reload_step::reload_hook, "Called on_reload_async");
    co_return inst;
  }

  /// Step 3: the snapshot of `e`'s serving instance (enabled flag, state_version and, with a
  /// state-preserving policy, what get_reload_state returned), stored by the State policy.
  awaitable<result<boost::json::object>> snapshot(entry& e) {
    boost::json::object snap;
    snap["enabled"] = reg_.lock()[e].enabled;
    snap["state_version"] = e.ver->meta.state_version;
    if (!policies_.preserves_state()) co_return result<boost::json::object>{std::move(snap)};
    auto out = std::make_shared<boost::json::value>();
    auto err = co_await run(e.ver, hook::get_state, get_state(e.inst.object, out));
    if (!err) {
      snap["custom"] = std::move(*out);
      err = policies_.save_state(e.name, snap);
    }
    if (err) err.plugin = e.name;
    co_return result<boost::json::object>{std::move(snap), std::move(err)};
  }

private:
  // migrate_state if the snapshot's state_version is not `v`'s, then set_reload_state.
  awaitable<error_info> restore_state(const version_ptr& v, const instance& inst, const boost::json::object& snapshot) {
    const auto& name = v->meta.name;
    // Built outside the co_await expression: g++ 12 mishandles temporaries there.
    auto custom = std::make_shared<boost::json::value>();
    if (auto c = snapshot.if_contains("custom")) *custom = *c;
    std::int64_t from = 1;
    if (auto sv = snapshot.if_contains("state_version"); sv && sv->is_int64()) from = sv->get_int64();
    if (from != v->meta.state_version) {
      auto lead = " (state_version " + std::to_string(v->meta.state_version) + ") was given a state of state_version " +
                  std::to_string(from) + " and";
      if (auto err = co_await run(v, hook::migrate_state, migrate(inst.object, from, custom), lead)) co_return err;
      hub_.log(log_level::info, name,
               "Migrated state of plugin " + name + " from state_version " + std::to_string(from) + " to " +
                   std::to_string(v->meta.state_version));
    }
    co_return co_await run(v, hook::set_state, set_state(inst.object, std::move(*custom)));
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
};

} // namespace hotreload::detail

#endif
