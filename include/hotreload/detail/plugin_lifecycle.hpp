#ifndef HOTRELOAD_DETAIL_PLUGIN_LIFECYCLE_HPP
#define HOTRELOAD_DETAIL_PLUGIN_LIFECYCLE_HPP

// Starting and stopping plugins (reloading them is the transaction's job). Functions named
// `*_locked` need the caller to hold the entry's async mutex (entry::lock).

#include <hotreload/detail/core.hpp>
#include <hotreload/detail/graph.hpp>
#include <hotreload/detail/result.hpp>

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace hotreload::detail {

class plugin_lifecycle {
public:
  explicit plugin_lifecycle(core& c) : c_(c) {}

  /// Starts new plugins: dependencies first, independent plugins concurrently. A plugin
  /// whose dependencies are missing, unsatisfied, cyclic or failed does not start (it waits
  /// for them, unless they form a cycle). The first failure.
  awaitable<error_info> start_all(std::vector<std::pair<entry_ptr, version_ptr>> fresh, clock::time_point t0) {
    if (fresh.empty()) co_return error_info{};
    auto versions = c_.reg.serving();
    std::vector<graph_node> nodes;
    for (auto& [e, v] : fresh) {
      versions[e->name] = &v->meta;
      nodes.push_back({e->name, &v->meta});
    }
    auto cycle = find_cycle(versions);
    auto preds = dependencies_within(nodes);
    std::vector<error_info> problem(fresh.size());
    for (std::size_t i = 0; i < fresh.size(); ++i) {
      problem[i] = dependency_problem(fresh[i].second->meta, versions);
      if (!problem[i] && std::find(cycle.begin(), cycle.end(), nodes[i].name) != cycle.end())
        problem[i] = fail(errc::dependency_cycle, nodes[i].name,
                          "plugins depend on each other in a cycle: " + cycle_text(cycle) +
                              "; remove one of these \"depends_on\" entries");
      if (problem[i]) preds[i].clear(); // it fails at once
    }
    entry_locks locks; // new entries: free at once
    for (auto& [e, v] : fresh) co_await locks.add(e);
    std::vector<bool> down(fresh.size());
    first_error first;
    co_await run_dag(c_.strand, preds, [&](std::size_t i) -> awaitable<void> {
      auto& [e, v] = fresh[i];
      for (auto p : preds[i])
        if (down[p] && !problem[i])
          problem[i] = fail(errc::missing_dependency, e->name,
                            "plugin '" + e->name + "' cannot start: its dependency '" + nodes[p].name +
                                "' did not start");
      error_info err = problem[i]; // not a conditional expression around co_await: g++ 12
      if (err) cannot_start(*e, v, err, t0);
      else err = co_await start_locked(*e, v, t0);
      down[i] = static_cast<bool>(first(err));
    });
    co_return first.get();
  }

  /// A plugin that had failed, given a new version: it starts if its dependencies serve.
  awaitable<error_info> restart_locked(entry& e, version_ptr v, clock::time_point t0) {
    if (auto problem = dependency_problem(v->meta, c_.reg.serving())) co_return cannot_start(e, v, problem, t0);
    e.waiting.reset();
    co_return co_await start_locked(e, std::move(v), t0);
  }

  /// Plugins that could not start for want of a dependency start once it serves.
  awaitable<void> retry_waiting() {
    for (bool again = true; again;) {
      again = false;
      auto versions = c_.reg.serving();
      for (auto& e : c_.reg.all()) {
        if (!e->waiting || e->removed || dependency_problem(e->waiting->meta, versions)) continue;
        entry_locks lock;
        co_await lock.add(e);
        if (!e->waiting || e->inst || !c_.running()) continue;
        auto v = std::exchange(e->waiting, nullptr);
        c_.hub.log(log_level::info, e->name, "Dependencies of plugin " + e->name + " are there now; starting it");
        if (!co_await start_locked(*e, std::move(v), clock::now())) again = true;
      }
    }
  }

  /// async_stop for one plugin: quiesce, snapshot, teardown_async (all within
  /// options.max_caller_wait, each hook also within its own limit); then it is gone.
  awaitable<void> stop_locked(entry& e) {
    e.removed = true;
    auto stopping = fail(errc::stopping, e.name, "plugin '" + e.name + "' is stopping");
    if (!e.inst) co_return c_.gate.take_down(e, stopping, false);
    hook_threads::burst burst(c_.threads);
    auto window = deadline_after(c_.opts.max_caller_wait);
    if (auto err = co_await c_.gate.quiesce(e, false, window))
      c_.hub.log(log_level::warning, e.name, err.message + " (tearing it down anyway: the reloader is stopping)");
    if (c_.policies.preserves_state()) {
      auto snap = co_await c_.hooks.snapshot(e, window);
      if (!snap.error) snap.error = c_.policies.commit_state(e.name);
      if (snap.error)
        c_.hub.log(log_level::warning, e.name, "State of plugin " + e.name + " not saved at stop: " + snap.error.message);
    }
    if (auto err = co_await c_.hooks.call(e.ver, e.inst, hook::teardown, window))
      c_.hub.log(log_level::warning, e.name, err.message);
    auto v = std::exchange(e.ver, nullptr);
    e.inst = {};
    c_.gate.take_down(e, stopping, false);
    c_.hub.log(log_level::info, e.name, "Stopped plugin: " + e.name);
    c_.hub.emit(event_kind::stopped, e.name, meta_of(v), nullptr);
  }

private:
  // First start of a plugin (or a restart after it failed): constructor, saved state if the
  // State policy has some, setup_async, publish.
  awaitable<error_info> start_locked(entry& e, version_ptr v, clock::time_point t0) {
    snapshot_ptr snapshot;
    if (c_.policies.preserves_state()) snapshot = c_.policies.load_state(e.name);
    if (snapshot)
      if (auto en = snapshot->if_contains("enabled"); en && en->is_bool()) c_.reg.set_enabled(e, en->get_bool());
    hook_threads::burst burst(c_.threads);
    auto inst = co_await c_.hooks.bring_up(v, snapshot, nullptr, t0);
    if (!inst) co_return cannot_start(e, v, inst.error, t0);
    c_.gate.install(e, v, std::move(inst.value), publication::started);
    c_.hub.log(log_level::info, e.name, "Loaded plugin: " + e.name + " " + v->meta.version + " (" + ms(clock::now() - t0) + ")");
    c_.hub.emit(event_kind::loaded, e.name, nullptr, &v->meta, clock::now() - t0);
    co_return error_info{};
  }

  // A plugin that cannot start: nothing serves; it waits for its dependencies if that is
  // what it lacks.
  error_info cannot_start(entry& e, const version_ptr& v, const error_info& err, clock::time_point t0) {
    c_.hub.log(log_level::error, e.name, "Failed to start plugin: " + e.name + ": " + err.message);
    c_.gate.take_down(e, err, true);
    if (err.code == errc::missing_dependency || err.code == errc::dependency_version) e.waiting = v;
    c_.hub.emit(event_kind::load_failed, e.name, nullptr, &v->meta, clock::now() - t0, err);
    return err;
  }

  core& c_;
};

} // namespace hotreload::detail

#endif
