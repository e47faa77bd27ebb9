#ifndef HOTRELOAD_DETAIL_TRANSACTION_HPP
#define HOTRELOAD_DETAIL_TRANSACTION_HPP

// The reload transaction, for a set of plugins and every plugin that depends on them. Its
// member functions are its phases, in the order run() calls them:
//   collect, lock, load_and_validate (step 1), settle_dependencies, keep_affected,
//   quiesce (2), snapshot (3) -- a failure so far: abort, everything serves on --
//   replace: tear_down (4) and bring_up (5-8: construct, restore state, on_reload_async,
//   publish), with roll_back or give_up per plugin; commit (9: what the State policy staged,
//   once no caller waits); then restart_failed.
// Per plugin: one whose new version fails rolls back to its old version, and so do the
// plugins of the batch that depend on it; the others go ahead. A reload of one plugin makes
// steps 4-8 one job on the hook thread (one_job()), and steps 2 and 3 too when the State
// policy accepts every snapshot or keeps none (gate_in_job()): the steps and their outcomes
// are the same, with fewer hand-offs between threads, and none while callers wait.

#include <hotreload/detail/core.hpp>
#include <hotreload/detail/graph.hpp>
#include <hotreload/detail/plugin_lifecycle.hpp>
#include <hotreload/detail/result.hpp>

#include <map>
#include <optional>
#include <string>
#include <vector>

namespace hotreload::detail {

class reload_transaction {
public:
  /// `preloaded`: new versions already loaded and checked (a plugin taken over by a new
  /// file), used instead of loading their libraries again.
  reload_transaction(core& c, plugin_lifecycle& life, std::vector<std::string> names,
                     std::map<std::string, version_ptr, std::less<>> preloaded = {})
      : c_(c), life_(life), names_(std::move(names)), preloaded_(std::move(preloaded)) {}

  /// Completes with the first failure.
  awaitable<error_info> run() {
    collect();
    if (members_.empty()) co_return first_.get();
    entry_locks locks; // in name order, so that concurrent transactions cannot deadlock
    for (auto& [n, m] : members_) co_await locks.add(m.e);
    if (!c_.running())
      co_return fail(errc::stopping, names_.empty() ? std::string() : names_.front(),
                     "not reloaded: the reloader is stopping");
    co_await load_and_validate();
    settle_dependencies();
    keep_affected();
    if (!burst_) burst_.emplace(c_.threads); // the plugin calls come in quick succession
    auto err = co_await quiesce();
    if (!err && !snapshot_in_job()) err = co_await snapshot();
    if (err) abort(err);
    else co_await replace();
    commit();
    for (auto& [e, v] : restarts_) first_(co_await life_.restart_locked(*e, v, t0_));
    burst_.reset();
    co_return first_.get();
  }

private:
  struct member {
    entry_ptr e;
    bool requested = false; // its library is reloaded; else it is rebuilt on its own version
  };
  struct node {
    node(entry_ptr en, bool req, version_ptr o, version_ptr n)
        : e(std::move(en)), requested(req), old_v(std::move(o)), new_v(std::move(n)) {}
    entry_ptr e;
    bool requested = false;
    version_ptr old_v, new_v; // new_v == old_v: rebuilt against new dependencies
    instance old_instance;
    snapshot_ptr snapshot;
    bool stored = false; // the State policy took the snapshot: commit() commits it
    bool quiesced = false;
    bool untouched = false; // the job ended before the teardown: abort()
    std::shared_ptr<clock::time_point> published; // when the job published the new instance
    bool back = false; // brought up on old_v: its own new version or a dependency failed
    bool down = false; // could not be brought up at all
  };

  // The named plugins and, transitively, the plugins that depend on them.
  void collect() {
    std::map<std::string, entry_ptr, std::less<>> all;
    for (auto& e : c_.reg.all()) all[e->name] = e;
    std::vector<std::string> requested;
    for (auto& n : names_) {
      if (all.contains(n)) requested.push_back(n);
      else
        first_(fail(errc::plugin_not_found, n,
                    "no plugin named '" + n + "' is loaded; check its metadata name and the plugin directories"));
    }
    for (auto& n : with_dependents(requested, c_.reg.serving()))
      members_.try_emplace(n, member{all[n], std::find(requested.begin(), requested.end(), n) != requested.end()});
  }

  // Step 1: every requested library, validated while the old versions serve untouched.
  awaitable<void> load_and_validate() {
    std::vector<entry_ptr> requested;
    std::vector<std::filesystem::path> sources;
    for (auto& [n, m] : members_)
      if (m.requested && !m.e->removed) {
        c_.hub.log(log_level::info, n, "Reloading plugin: " + n);
        c_.hub.emit(event_kind::reload_started, n, meta_of(m.e->ver), nullptr);
        sources.push_back(c_.reg.source_of(*m.e));
        m.e->tried = stamp_of(sources.back());
        requested.push_back(m.e);
      }
    auto loaded = co_await load(requested, sources);
    for (auto& [n, m] : members_) {
      auto& e = m.e;
      if (e->removed) continue;
      auto i = static_cast<std::size_t>(std::find(requested.begin(), requested.end(), e) - requested.begin());
      if (!m.requested || failed_load(*e, loaded[i], sources, i)) {
        if (e->inst) nodes_.emplace_back(e, false, e->ver, e->ver); // still rebuilt if a dependency changes
      } else if (!e->inst) {
        restarts_.emplace_back(e, std::move(loaded[i].value));
      } else {
        auto& nv = loaded[i].value;
        c_.hub.step(n, reload_step::library_loaded, meta_of(e->ver), &nv->meta, t0_,
                    "Loaded new library " + nv->meta.version);
        nodes_.emplace_back(e, true, e->ver, std::move(nv));
      }
    }
  }

  // The new version of each requested plugin: preloaded, or loaded from its file (all at once).
  awaitable<std::vector<result<version_ptr>>> load(const std::vector<entry_ptr>& requested,
                                                   const std::vector<std::filesystem::path>& sources) {
    std::vector<result<version_ptr>> out(requested.size());
    std::vector<std::filesystem::path> files;
    std::vector<std::size_t> at;
    for (std::size_t i = 0; i < requested.size(); ++i)
      if (auto it = preloaded_.find(requested[i]->name); it != preloaded_.end()) out[i].value = it->second;
      else {
        files.push_back(sources[i]);
        at.push_back(i);
      }
    // The hook thread is woken as soon as a library is mapped, so that its wake-up (25-50 us
    // here) passes during the checks, not in the window; it then polls for the job (hook_threads).
    // Not while the cores are contended: it would not poll, only sleep again, and be woken twice.
    auto loaded = co_await c_.versions.load_all(files, c_.feed.dirs(), [this] {
      if (!burst_ && !c_.threads.contended()) burst_.emplace(c_.threads);
    });
    for (std::size_t k = 0; k < at.size(); ++k) out[at[k]] = std::move(loaded[k]);
    co_return out;
  }

  // Whether the new version of `e` failed to load or to validate (then reported).
  bool failed_load(entry& e, const result<version_ptr>& r, const std::vector<std::filesystem::path>& sources,
                   std::size_t i) {
    auto err = r.error;
    if (r.value && r.value->meta.name != e.name)
      err = fail(errc::name_mismatch, e.name,
                 sources[i].string() + " now declares plugin '" + r.value->meta.name + "', not '" + e.name +
                     "'; a plugin's name must not change across versions");
    if (err) failed(e, err, r.value);
    return static_cast<bool>(err);
  }

  // A new version that cannot serve next to the others keeps its old version, until nothing
  // changes any more.
  void settle_dependencies() {
    for (bool changed = true; changed;) {
      changed = false;
      auto versions = c_.reg.serving();
      for (auto& nd : nodes_) versions[nd.e->name] = &nd.new_v->meta;
      for (auto& nd : nodes_) {
        if (nd.new_v == nd.old_v) continue;
        if (auto problem = refusal(nd, versions)) {
          failed(*nd.e, problem, nd.new_v);
          nd.new_v = nd.old_v;
          nd.requested = false;
          changed = true;
          break;
        }
      }
    }
  }

  // Why the new version of `nd` cannot serve next to `versions`, or nothing.
  static error_info refusal(const node& nd, const version_map& versions) {
    const auto& name = nd.e->name;
    const auto& ver = nd.new_v->meta.version;
    if (auto p = dependency_problem(nd.new_v->meta, versions)) return p;
    if (auto p = broken_dependent(name, versions))
      return {p.code, name, name + " " + ver + " was refused: " + p.message};
    if (auto cycle = find_cycle(versions); !cycle.empty())
      return fail(errc::dependency_cycle, name,
                  "plugin '" + name + "' " + ver + " would close a dependency cycle: " + cycle_text(cycle) +
                      "; remove one of these \"depends_on\" entries");
    return {};
  }

  // Only what changed, and what depends on it, goes through the rest of the transaction.
  void keep_affected() {
    auto graph = [&] {
      std::vector<graph_node> g;
      for (auto& nd : nodes_) g.push_back({nd.e->name, &nd.new_v->meta});
      return dependencies_within(g);
    };
    auto preds = graph();
    std::vector<bool> affected(nodes_.size());
    for (auto i : topological(preds)) {
      affected[i] = nodes_[i].new_v != nodes_[i].old_v;
      for (auto p : preds[i]) affected[i] = affected[i] || affected[p];
    }
    std::vector<node> kept;
    for (std::size_t i = 0; i < nodes_.size(); ++i)
      if (affected[i]) kept.push_back(std::move(nodes_[i]));
    nodes_ = std::move(kept);
    up_ = graph();
    down_ = reversed(up_);
    order_ = topological(up_);
  }

  // Step 2, dependents first: no caller holds an old version. From here until publication
  // callers wait: what follows must fit in options.max_caller_wait.
  awaitable<error_info> quiesce() {
    auto start = clock::now();
    window_ = deadline_after(c_.opts.max_caller_wait);
    teardown_window_ = std::min(window_, start + c_.opts.max_caller_wait / 2);
    quiesce_until_ = std::min(deadline_after(c_.opts.quiesce_timeout), window_);
    if (gate_in_job()) { // first_calls(): its job closes the gate
      nodes_[0].quiesced = true;
      co_return error_info{};
    }
    for (auto it = order_.rbegin(); it != order_.rend(); ++it) {
      auto& nd = nodes_[*it];
      if (auto err = co_await c_.gate.quiesce(*nd.e, true, window_)) co_return err;
      nd.quiesced = true;
      step(nd, reload_step::quiesced, nd.new_v, "Quiesced");
    }
    co_return error_info{};
  }

  // Step 3: every old instance's snapshot, stored.
  awaitable<error_info> snapshot() {
    for (auto i : order_) {
      auto& nd = nodes_[i];
      auto snap = co_await c_.hooks.snapshot(*nd.e, window_);
      if (snap.error) co_return snap.error;
      if (c_.policies.preserves_state()) step(nd, reload_step::state_saved, nd.new_v, "Saved state");
      nd.snapshot = std::move(snap.value);
      nd.stored = true;
    }
    co_return error_info{};
  }

  // One plugin: its teardown and its new instance's calls are one job on the hook thread,
  // and so is its snapshot when the State policy accepts every snapshot (then saved once the
  // job is back). Each hand-off between the strand and the hook thread saved is a wake-up
  // less while callers wait.
  bool one_job() const { return nodes_.size() == 1 && !c_.opts.overlap_teardown; }
  bool snapshot_in_job() const {
    return one_job() && c_.policies.preserves_state() && c_.policies.accepts_every_snapshot();
  }
  // Then the window in which callers wait (quiesce to publish) is all in the job, on one thread.
  bool gate_in_job() const { return one_job() && (snapshot_in_job() || !c_.policies.preserves_state()); }

  // A failure before any old instance was touched: they all serve on.
  void abort(const error_info& err) {
    for (auto& nd : nodes_)
      if (nd.quiesced) c_.gate.resume(*nd.e);
    for (auto& nd : nodes_)
      if (nd.requested) failed(*nd.e, err, nd.new_v);
    first_(err);
  }

  // Steps 4-8: the old instances go (dependents first), the new ones come (dependencies
  // first; independent plugins concurrently); one after the other, or both at once with
  // options.overlap_teardown. For one plugin, one job (one_job()).
  awaitable<void> replace() {
    for (auto& nd : nodes_) nd.old_instance = nd.e->inst;
    if (one_job()) {
      co_await bring_up(0, true);
      nodes_[0].old_instance = {};
      co_return;
    }
    auto tear_down_all = run_dag(c_.strand, down_, [this](std::size_t i) { return tear_down(i); });
    auto bring_up_all = run_dag(c_.strand, up_, [this](std::size_t i) { return bring_up(i); });
    if (c_.opts.overlap_teardown) {
      std::vector<awaitable<void>> both;
      both.push_back(std::move(tear_down_all));
      both.push_back(std::move(bring_up_all));
      co_await join(c_.strand, std::move(both));
    } else {
      co_await std::move(tear_down_all);
      co_await std::move(bring_up_all);
    }
    // Each library unloads once its last handle is gone: the old instances go, dependents first.
    for (auto it = order_.rbegin(); it != order_.rend(); ++it) nodes_[*it].old_instance = {};
  }

  // Step 4. A failure is reported; the old instance goes regardless.
  awaitable<void> tear_down(std::size_t i) {
    auto& nd = nodes_[i];
    announce_teardown(nd);
    torn_down(nd, co_await c_.hooks.call(nd.old_v, nd.old_instance, hook::teardown, teardown_window_), clock::now());
  }

  void announce_teardown(const node& nd) {
    if (c_.hub.debug_on()) c_.hub.log(log_level::debug, nd.e->name, "Calling teardown_async for plugin: " + nd.e->name);
  }

  void torn_down(node& nd, const error_info& err, clock::time_point at) {
    if (err) {
      c_.hub.log(log_level::warning, nd.e->name, err.message);
      c_.gate.record_error(*nd.e, err);
    }
    step(nd, reload_step::torn_down, nd.new_v, "Tore down old instance", at);
    if (nd.e->inst.object == nd.old_instance.object) nd.e->inst = {}; // not yet replaced (overlap)
  }

  // Steps 5-8 for one plugin, or its rollback; with `in_one_job`, step 4 too (and step 3 if
  // its snapshot is not taken yet), in the same job.
  awaitable<void> bring_up(std::size_t i, bool in_one_job = false) {
    auto& nd = nodes_[i];
    auto& e = *nd.e;
    for (auto d : up_[i])
      if (nodes_[d].down)
        co_return give_up(nd, fail(errc::missing_dependency, e.name,
                                   "plugin '" + e.name + "' cannot start: its dependency '" + nodes_[d].e->name +
                                       "' is unavailable"));
    auto v = nd.back ? nd.old_v : nd.new_v;
    auto window = nd.back ? deadline_after(c_.opts.max_caller_wait) : window_; // a rollback starts anew
    auto before = in_one_job ? first_calls(nd) : hook_runner::prelude{};
    auto inst = co_await c_.hooks.bring_up(v, nd.snapshot, nd.old_v, t0_, window, in_one_job ? &before : nullptr);
    if (nd.untouched) co_return abort(inst.error); // quiescing or the snapshot failed: nothing was torn down
    if (inst) co_return serve(nd, v, std::move(inst.value));
    if (v != nd.old_v || !nd.requested) failed(e, inst.error, v);
    std::string also;
    if (v != nd.old_v) {
      auto rerr = co_await roll_back(i, inst.error);
      if (!rerr) co_return;
      also = "; then the rollback to " + nd.old_v->meta.version + " failed too: " + rerr.message;
    }
    give_up(nd, fail(errc::rollback_failed, e.name,
                     inst.error.message + also + "; the plugin is unavailable until a working version is loaded"));
  }

  // The calls that go before node `nd`'s new instance's in one job: quiescing (if
  // gate_in_job()), its snapshot (if snapshot_in_job()) and its old instance's teardown; and
  // the publication after them. If quiescing or the snapshot fails, nothing else is made and
  // the node is left `untouched`.
  hook_runner::prelude first_calls(node& nd) {
    hook_runner::prelude p;
    auto gate = std::make_shared<error_info>(); // why quiescing failed
    const bool q = gate_in_job();
    if (q) p.calls.push_back(c_.hooks.quiesce_call(nd.e, quiesce_until_, gate));
    const std::size_t s = p.calls.size(); // the snapshot's place in the job
    const bool snap = snapshot_in_job();
    if (snap) {
      auto frame = c_.hooks.snapshot_frame(*nd.e);
      p.calls.push_back(c_.hooks.snapshot_call(*nd.e, frame, window_));
      nd.snapshot = std::move(frame); // filled by the job before the new instance's calls read it
    }
    const std::size_t k = p.calls.size(); // the teardown's
    announce_teardown(nd);
    p.calls.push_back(hook_runner::teardown_call(nd.old_v, nd.old_instance, teardown_window_));
    nd.published = std::make_shared<clock::time_point>();
    p.publish_to = nd.e;
    p.how = publication_of(nd);
    p.published = nd.published;
    p.done = [this, &nd, q, s, snap, k, gate](const hook_runner::turn& t) -> error_info {
      if (*gate) {
        nd.untouched = true;
        return *gate;
      }
      if (q) step(nd, reload_step::quiesced, nd.new_v, "Quiesced", t.ended[0]);
      if (snap && t.error && t.at == s) {
        nd.untouched = true;
        return t.error;
      }
      if (snap) saved(nd, t.ended[s]);
      if (t.error && t.at == k) torn_down(nd, t.error, clock::now()); // not made: the new instance's calls alone
      else torn_down(nd, t.went_on[k], t.ended[k]);
      return {};
    };
    return p;
  }

  // Step 3 in one job, stored now that it is back. The State policy accepts every snapshot;
  // should it refuse this one all the same, the old instance is gone already: reported as a
  // failed commit is, and the reload goes on.
  void saved(node& nd, clock::time_point at) {
    if (auto err = c_.policies.save_state(nd.e->name, nd.snapshot)) not_stored(nd, std::move(err));
    else nd.stored = true;
    step(nd, reload_step::state_saved, nd.new_v, "Saved state", at);
  }

  // Step 8: `inst` of `v` serves.
  void serve(node& nd, const version_ptr& v, instance inst) {
    auto& e = *nd.e;
    const bool reloaded = publication_of(nd) == publication::reloaded;
    auto at = clock::now();
    if (nd.published && *nd.published != clock::time_point{}) { // by its job
      at = *nd.published;
      c_.gate.installed(e, v, std::move(inst));
    } else {
      c_.gate.install(e, v, std::move(inst), publication_of(nd));
    }
    step(nd, reload_step::published, v, "Published new instance", at);
    if (reloaded) {
      c_.hub.log(log_level::info, e.name, "Successfully reloaded plugin: " + e.name + " (" + ms(clock::now() - t0_) + ")");
      c_.hub.emit(event_kind::reloaded, e.name, &nd.old_v->meta, &v->meta, clock::now() - t0_);
    } else if (!nd.requested) {
      c_.hub.log(log_level::info, e.name, "Rebuilt plugin: " + e.name + " (a dependency was reloaded)");
    }
  }

  static publication publication_of(const node& nd) {
    return nd.requested && !nd.back ? publication::reloaded : publication::rebuilt;
  }

  // The old version of node i serves again (with its state), and the batch's plugins that
  // depend on it keep theirs. Empty, or why the rollback failed too.
  awaitable<error_info> roll_back(std::size_t i, const error_info& why) {
    std::vector<std::size_t> back{i};
    for (std::size_t k = 0; k < back.size(); ++k) {
      nodes_[back[k]].back = true;
      back.insert(back.end(), down_[back[k]].begin(), down_[back[k]].end());
    }
    auto& nd = nodes_[i];
    auto& e = *nd.e;
    auto inst = co_await c_.hooks.bring_up(nd.old_v, nd.snapshot, nd.old_v, t0_, deadline_after(c_.opts.max_caller_wait));
    if (!inst) co_return inst.error;
    c_.gate.install(e, nd.old_v, std::move(inst.value), publication::rebuilt);
    c_.hub.log(log_level::warning, e.name,
               "Rolled back plugin: " + e.name + " to " + nd.old_v->meta.version + " (" + ms(clock::now() - t0_) + ")");
    c_.hub.emit(event_kind::rolled_back, e.name, &nd.old_v->meta, &nd.old_v->meta, clock::now() - t0_, why);
    co_return error_info{};
  }

  // Step 9, now that callers have a version again (whether the reload went ahead, rolled back
  // or was aborted): each snapshot the State policy staged is made durable. A failure is
  // reported and recorded; the reload stands, and the serving instance has the state.
  void commit() {
    for (auto i : order_) {
      auto& nd = nodes_[i];
      if (!nd.stored) continue;
      if (auto err = c_.policies.commit_state(nd.e->name)) not_stored(nd, std::move(err));
    }
  }

  void not_stored(node& nd, error_info err) {
    err.plugin = nd.e->name;
    err.message = "State of plugin " + nd.e->name + " not stored (the plugin serves with it; a start after a "
                  "restart would begin from the last snapshot stored): " + err.message;
    c_.hub.log(log_level::error, nd.e->name, err.message);
    c_.gate.record_error(*nd.e, err);
  }

  // The plugin cannot be brought up at all: it is unavailable.
  void give_up(node& nd, const error_info& err) {
    auto& e = *nd.e;
    c_.hub.log(log_level::error, e.name, err.message);
    nd.down = true;
    c_.gate.take_down(e, err, true);
    c_.hub.emit(event_kind::reload_failed, e.name, &nd.old_v->meta, nullptr, clock::now() - t0_, err);
    first_(err);
  }

  // The reload of `e` to `nv` failed: recorded, logged, reported.
  void failed(entry& e, const error_info& err, const version_ptr& nv) {
    c_.gate.record_error(e, err);
    c_.hub.log(log_level::error, e.name, "Reload failed for plugin: " + e.name + ": " + err.message);
    c_.hub.emit(event_kind::reload_failed, e.name, meta_of(e.ver), meta_of(nv), clock::now() - t0_, err);
    first_(err);
  }

  void step(const node& nd, reload_step s, const version_ptr& v, std::string_view what,
            clock::time_point at = clock::now()) {
    c_.hub.step(nd.e->name, s, &nd.old_v->meta, &v->meta, t0_, what, at);
  }

  core& c_;
  plugin_lifecycle& life_;
  const std::vector<std::string> names_;
  std::optional<hook_threads::burst> burst_; // from the first mapping to the end of run()
  const std::map<std::string, version_ptr, std::less<>> preloaded_;
  const clock::time_point t0_ = clock::now();
  clock::time_point window_ = no_window;          // when callers have waited long enough (set at quiesce)
  clock::time_point teardown_window_ = no_window; // the teardowns' share of it
  clock::time_point quiesce_until_ = no_window;   // when quiescing fails
  first_error first_;
  std::map<std::string, member, std::less<>> members_; // by name: the order locks are taken in
  std::vector<node> nodes_;
  std::vector<std::pair<entry_ptr, version_ptr>> restarts_; // failed plugins given a new version
  predecessor_lists up_, down_;                             // dependencies, dependents
  std::vector<std::size_t> order_;                          // dependencies first
};

} // namespace hotreload::detail

#endif
