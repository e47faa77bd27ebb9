#ifndef HOTRELOAD_DETAIL_ENGINE_HPP
#define HOTRELOAD_DETAIL_ENGINE_HPP

// The engine behind basic_hot_reloader: the reloader's operations (start, stop, load, reload,
// the watcher's changes) over the parts in `core`. Every coroutine here runs on the strand.

#include <hotreload/detail/core.hpp>
#include <hotreload/detail/linux/host_exports.hpp>
#include <hotreload/detail/plugin_lifecycle.hpp>
#include <hotreload/detail/transaction.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace hotreload::detail {

class engine : public std::enable_shared_from_this<engine> {
public:
  /// The one shared core: the front end owns it; what may outlive the front end holds weak
  /// references into it (aliasing this object's ownership).
  static std::shared_ptr<engine> create(asio::any_io_executor ex, options o, policy_ops& p, interface_traits t) {
    auto e = std::shared_ptr<engine>(new engine(std::move(ex), std::move(o), p, t));
    auto hub = std::shared_ptr<event_hub>(e, &e->c_.hub);
    auto reg = std::shared_ptr<registry>(e, &e->c_.reg);
    e->mail_ = std::make_shared<strand_mailbox>(e->c_.strand);
    e->c_.versions.set_core(hub, reg, e->mail_);
    e->c_.hooks.set_core(hub, reg, e->mail_);
    if (!host_exports_symbols())
      e->c_.hub.log(log_level::warning, {},
                    "this program does not export its symbols (it was linked without -rdynamic): a plugin that calls a "
                    "function of the program will fail to load with 'undefined symbol'; link it with export_dynamic: "
                    "true (meson), hotreload_add_host / ENABLE_EXPORTS (CMake) or -rdynamic");
    return e;
  }

  core& parts() noexcept { return c_; }

  /// The front end is going: nothing is delivered or handed out any more, the plugins'
  /// instances are destroyed (without teardown_async), the hook threads end and the
  /// policies are left alone.
  void close() {
    mail_->close();
    c_.policies.unwatch();
    c_.hub.close();
    c_.reg.close();
    c_.threads.close();
  }

  awaitable<error_info> start() {
    if (c_.state == lifecycle::stopping) { // async_stop then async_start: the start follows
      auto stopped = stopped_;
      co_await stopped->wait();
    }
    if (c_.state != lifecycle::stopped)
      co_return fail(errc::already_started, {}, "async_start called twice; call async_stop first");
    c_.feed.read_dirs();
    auto files = c_.feed.scan();
    if (files.error) co_return files.error;
    c_.state = lifecycle::running;
    // The rescan below leaves alone what this first load already tried and that has not
    // changed since, a file refused too (it has no entry that would say so): once is enough to
    // report a failure.
    std::map<std::filesystem::path, std::optional<file_stamp>> tried;
    for (auto& f : files.value) tried.emplace(f, stamp_of(f));
    auto loaded = co_await load_files(std::move(files.value));
    // Missing directories too (with allow_missing_dirs): watchers pick them up once they exist.
    if (auto err = c_.policies.watch(c_.feed.dirs(), deliver(), reporter())) {
      c_.hub.log(log_level::error, {}, "The watcher did not start: " + err.message);
      co_return err;
    }
    co_await rescan(std::move(tried)); // what changed between the first scan and the watch
    co_return loaded.error;
  }

  awaitable<error_info> stop() {
    if (c_.state == lifecycle::stopped)
      co_return fail(errc::not_started, {}, "async_stop called on a reloader that is not started");
    if (c_.state == lifecycle::stopping) co_return fail(errc::stopping, {}, "async_stop is already in progress");
    c_.state = lifecycle::stopping;
    auto stopped = stopped_ = std::make_shared<async_event>();
    c_.policies.unwatch();
    ++session_; // deliveries of this watch in flight are dropped
    c_.feed.clear();
    if (flushes_ > 0) {
      auto idle = flushes_idle_;
      co_await idle->wait();
    }
    co_await stop_and_forget(c_.reg.all());
    // Let the libraries unmap: what the plugins left queued (cancelled timers, closed
    // sockets) completes first, since it keeps its version mapped.
    if (auto left = co_await c_.hub.drain(deadline_after(c_.opts.quiesce_timeout)))
      c_.hub.log(log_level::warning, {},
                 std::to_string(left) + " plugin version(s) still referenced after stop (plugin_ptrs held, or "
                 "operations the plugins left pending); each unloads when its last reference is released");
    c_.state = lifecycle::stopped;
    stopped->set();
    co_return error_info{};
  }

  awaitable<error_info> reload(std::vector<std::string> names, std::map<std::string, version_ptr, std::less<>> preloaded = {}) {
    reload_transaction tx(c_, life_, std::move(names), std::move(preloaded));
    co_return co_await tx.run();
  }

  /// Loads a library file (or reloads its plugin); the plugin's name.
  awaitable<result<std::string>> load_file(std::filesystem::path file) {
    if (!c_.running())
      co_return result<std::string>{{}, fail(errc::not_started, {}, "the reloader is not started; call async_start first")};
    std::vector<std::filesystem::path> files{std::filesystem::absolute(file).lexically_normal()};
    auto loaded = co_await load_files(std::move(files));
    co_return result<std::string>{loaded.value.empty() ? std::string() : loaded.value.front(), loaded.error};
  }

  /// async_get's slow path, from any thread: answered on the strand.
  void get(std::string name, waiter done) {
    asio::post(c_.strand, [self = shared_from_this(), name = std::move(name), done = std::move(done)]() mutable {
      auto e = self->c_.reg.find(name);
      if (!e)
        return done(fail(errc::plugin_not_found, name,
                         "no plugin named '" + name + "' is loaded; check its metadata name and the plugin directories"),
                    nullptr);
      self->c_.gate.get(e, std::move(done));
    });
  }

  /// From any thread.
  error_code set_enabled(std::string_view name, bool on) {
    auto e = c_.reg.find(name);
    if (!e) return make_error_code(errc::plugin_not_found);
    if (!c_.reg.set_enabled(*e, on)) return {};
    asio::post(c_.strand, [weak = weak_from_this(), e, on] {
      auto self = weak.lock();
      if (!self) return;
      self->c_.hub.log(log_level::info, e->name, std::string(on ? "Enabled" : "Disabled") + " plugin: " + e->name);
      self->c_.hub.emit(on ? event_kind::enabled : event_kind::disabled, e->name, meta_of(e->ver), meta_of(e->ver));
    });
    return {};
  }

private:
  engine(asio::any_io_executor ex, options o, policy_ops& p, interface_traits t) : c_(std::move(ex), std::move(o), p, t) {}

  // What the watcher calls: a watcher may have a delivery in flight when it is stopped, so
  // what it posts reaches the engine only while it is open and in the same watch.
  change_handler deliver() {
    return [weak = weak_from_this(), strand = c_.strand, session = session_](std::vector<file_change> changes) {
      asio::post(strand, [weak, session, changes = std::move(changes)]() mutable {
        auto self = weak.lock();
        if (self && session == self->session_ && self->c_.reg.is_open()) self->on_changes(std::move(changes));
      });
    };
  }

  // What a reporting watcher logs and emits: events go through the strand, in order with the
  // reloader's own, while the front end is there.
  watch_reporter reporter() {
    watch_reporter r;
    r.log = [log = c_.hub.get_logger()](log_level l, std::string_view m) { log.log(l, {}, m); };
    r.emit = [weak = weak_from_this(), strand = c_.strand](reload_event ev) {
      asio::post(strand, [weak, ev = std::move(ev)] {
        if (auto self = weak.lock(); self && self->c_.reg.is_open()) self->c_.hub.emit(ev);
      });
    };
    return r;
  }

  void on_changes(std::vector<file_change> changes) {
    if (c_.running() && c_.feed.take(std::move(changes))) asio::co_spawn(c_.strand, flush(), asio::detached);
  }

  // One debounce window: once it has passed, what it gathered is loaded, reloaded or removed.
  // It keeps the engine alive while it waits; it ends at once if the front end went meanwhile.
  awaitable<void> flush() {
    auto keep = shared_from_this();
    struct active {
      engine& e;
      explicit active(engine& en) : e(en) {
        if (e.flushes_++ == 0) e.flushes_idle_ = std::make_shared<async_event>();
      }
      ~active() {
        if (--e.flushes_ == 0) e.flushes_idle_->set();
      }
    } guard{*this};
    auto batch = co_await c_.feed.settle();
    if (!batch || !c_.reg.is_open()) co_return;
    if (batch->rescan) co_return co_await rescan();
    for (auto& f : batch->removed)
      if (c_.running()) co_await removed(f);
    if (c_.running()) co_await load_changed(std::move(batch->changed));
  }

  // Library files that may be new or changed, as one batch; a file that holds exactly what
  // was last loaded (or tried) from it is left alone.
  awaitable<void> load_changed(std::vector<std::filesystem::path> files) {
    std::erase_if(files, [&](const std::filesystem::path& f) {
      auto e = c_.reg.find_by_source(f);
      return e && e->tried && stamp_of(f) == e->tried;
    });
    if (files.empty()) co_return;
    if (c_.hub.debug_on()) {
      std::string list;
      for (auto& f : files) {
        auto e = c_.reg.find_by_source(f);
        list += (list.empty() ? "" : ", ") + (e ? e->name : f.stem().string());
      }
      c_.hub.log(log_level::debug, {}, "Affected plugins: [" + list + "]");
    }
    co_await load_files(std::move(files));
  }

  // Every plugin directory again: new libraries load, changed ones reload, vanished ones are
  // handled as removed. For lost events and for the start-up window (`tried`: files the start
  // loaded or tried, with their stamps then; left alone if unchanged).
  awaitable<void> rescan(std::map<std::filesystem::path, std::optional<file_stamp>> tried = {}) {
    auto files = c_.feed.scan();
    if (files.error) c_.hub.log(log_level::warning, {}, files.error.message);
    std::erase_if(files.value, [&](const std::filesystem::path& f) {
      auto it = tried.find(f);
      return it != tried.end() && it->second && stamp_of(f) == it->second;
    });
    co_await load_changed(std::move(files.value));
    std::vector<std::filesystem::path> gone;
    for (auto& e : c_.reg.all())
      if (auto source = c_.reg.source_of(*e); !stamp_of(source)) gone.push_back(source);
    for (auto& f : gone) co_await removed(f);
  }

  awaitable<void> removed(std::filesystem::path file) {
    auto e = c_.reg.find_by_source(file);
    if (!e) co_return;
    c_.hub.emit(event_kind::file_removed, e->name, meta_of(e->ver), nullptr);
    if (c_.opts.on_remove == remove_action::keep) {
      c_.hub.log(log_level::warning, e->name,
                 "Plugin library removed: " + file.string() + "; plugin '" + e->name + "' keeps serving its loaded version");
      co_return;
    }
    if (e->removed || stamp_of(c_.reg.source_of(*e))) co_return; // stopped meanwhile, or back already
    c_.hub.log(log_level::info, e->name, "Plugin library removed: " + file.string() + "; unloading plugin '" + e->name + "'");
    // Its dependents cannot serve without it: they go first.
    std::vector<entry_ptr> victims;
    for (auto& n : with_dependents({e->name}, c_.reg.serving()))
      if (auto v = c_.reg.find(n)) victims.push_back(std::move(v));
    co_await stop_and_forget(std::move(victims));
  }

  // Stops `entries`, dependents before their dependencies, and drops them from the registry
  // (async_stop, and a removed library with what depends on it).
  awaitable<void> stop_and_forget(std::vector<entry_ptr> entries) {
    std::vector<graph_node> nodes;
    for (auto& e : entries) nodes.push_back({e->name, meta_of(e->ver)});
    for (auto i : dependents_first(nodes)) {
      auto& e = entries[i];
      entry_locks lock;
      co_await lock.add(e);
      if (e->removed) continue; // stopped meanwhile
      co_await life_.stop_locked(*e);
      c_.reg.erase(e->name);
    }
  }

  // Loads library files: each new plugin is added, then all of them start in dependency order
  // (independent ones concurrently); files of loaded plugins reload them as one batch. The
  // names of the plugins concerned, and the first failure.
  awaitable<result<std::vector<std::string>>> load_files(std::vector<std::filesystem::path> files) {
    auto t0 = clock::now();
    first_error first;
    std::vector<std::string> names, reloads;
    std::vector<std::filesystem::path> new_files;
    std::vector<std::optional<file_stamp>> stamps;
    for (auto& file : files)
      if (auto known = c_.reg.find_by_source(file)) {
        reloads.push_back(known->name);
      } else {
        new_files.push_back(file);
        stamps.push_back(stamp_of(file));
      }
    auto loaded = co_await c_.versions.load_all(new_files, c_.feed.dirs());
    std::vector<std::pair<entry_ptr, version_ptr>> fresh;
    std::map<std::string, version_ptr, std::less<>> taken_over; // loaded already: not loaded again
    for (std::size_t i = 0; i < new_files.size(); ++i) {
      auto a = admit(new_files[i], stamps[i], std::move(loaded[i]), t0);
      first(a.error);
      if (!a.name.empty() && !a.renamed) names.push_back(a.name);
      if (a.renamed) {
        reloads.push_back(a.name);
        taken_over[a.name] = std::move(a.version);
      }
      if (a.fresh) fresh.emplace_back(std::move(a.fresh), std::move(a.version));
    }
    first(co_await life_.start_all(std::move(fresh), t0));
    if (!reloads.empty()) {
      names.insert(names.end(), reloads.begin(), reloads.end());
      first(co_await reload(std::move(reloads), std::move(taken_over)));
    }
    co_await life_.retry_waiting();
    co_return result<std::vector<std::string>>{std::move(names), first.get()};
  }

  // What a newly loaded library becomes: a new plugin to start, a known plugin under a new
  // file name (its old file is gone) to reload, or a failure.
  struct admission {
    std::string name;
    error_info error;
    entry_ptr fresh;
    version_ptr version;
    bool renamed = false;
  };
  admission admit(const std::filesystem::path& file, std::optional<file_stamp> stamp, result<version_ptr> r,
                  clock::time_point t0) {
    admission a;
    auto& v = r.value;
    // The load may have waited (a probe): meanwhile a stop may have begun, or another call
    // may have loaded this very file.
    if (v && !r.error && !c_.running()) r.error = fail(errc::stopping, v->meta.name, "not loaded: the reloader is stopping");
    if (v && !r.error && c_.reg.find_by_source(file)) return a;
    if (r.error) {
      a.error = r.error;
      a.error.plugin = file.stem().string();
      c_.hub.log(log_level::error, a.error.plugin, "Failed to load plugin library " + file.string() + ": " + a.error.message);
      c_.hub.emit(event_kind::load_failed, a.error.plugin, nullptr, nullptr, clock::now() - t0, a.error);
      return a;
    }
    a.name = v->meta.name;
    auto e = std::make_shared<entry>(a.name);
    {
      auto l = c_.reg.lock();
      auto [it, inserted] = l.entries().try_emplace(a.name, e);
      auto& g = l[*it->second];
      if (inserted) {
        g.source = g.info.path = file;
        g.info.name = a.name;
        e->tried = stamp;
      } else if (!stamp_of(g.source)) {
        a.renamed = true; // the same plugin under a new file name
        g.source = g.info.path = file;
      } else {
        a.error = fail(errc::duplicate_plugin, a.name,
                       "two libraries declare plugin '" + a.name + "': " + g.source.string() + " and " + file.string() +
                           "; the second was not loaded; give one of them another \"name\"");
      }
    }
    if (a.error) {
      c_.hub.log(log_level::error, a.name, a.error.message);
      c_.hub.emit(event_kind::load_failed, a.name, nullptr, &v->meta, clock::now() - t0, a.error);
    } else {
      if (!a.renamed) a.fresh = std::move(e);
      a.version = std::move(v);
    }
    return a;
  }

  core c_;
  std::shared_ptr<strand_mailbox> mail_;       // c_.strand, for threads that may outlive us; closed first
  plugin_lifecycle life_{c_};
  std::uint64_t session_ = 0;                  // bumped by stop: a watch's late deliveries are dropped
  std::size_t flushes_ = 0;                    // debounce windows being handled
  std::shared_ptr<async_event> flushes_idle_;  // set when the last one ends
  std::shared_ptr<async_event> stopped_;       // set when the stop under way ends
};

} // namespace hotreload::detail

#endif
