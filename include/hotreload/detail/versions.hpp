#ifndef HOTRELOAD_DETAIL_VERSIONS_HPP
#define HOTRELOAD_DETAIL_VERSIONS_HPP

// Versions and instances: a library file becomes a checked version (trust, the Loader, ABI
// tag, metadata), and a version becomes an instance (the plugin's factory, with its context).

#include <hotreload/detail/background.hpp>
#include <hotreload/detail/event_hub.hpp>
#include <hotreload/detail/hook_threads.hpp>
#include <hotreload/detail/leak.hpp>
#include <hotreload/detail/linux/trust.hpp>
#include <hotreload/detail/policies.hpp>
#include <hotreload/detail/registry.hpp>
#include <hotreload/detail/result.hpp>
#include <hotreload/detail/sync.hpp>
#include <hotreload/options.hpp>

#include <boost/asio/post.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace hotreload::detail {

class version_factory {
public:
  version_factory(const options& o, strand_t s, event_hub& hub, policy_ops& p, interface_traits t)
      : opts_(o), strand_(std::move(s)), hub_(hub), policies_(p), traits_(t) {}

  /// What outlives the reloader (versions held by plugin_ptrs, dependency resolvers) reaches
  /// it through these: weak references into the one shared core.
  void set_core(std::weak_ptr<event_hub> hub, std::weak_ptr<registry> reg, std::shared_ptr<strand_mailbox> mail) {
    weak_hub_ = std::move(hub);
    weak_reg_ = std::move(reg);
    mail_ = std::move(mail);
  }

  /// Step 1: a fresh mapping of `file`, its ABI tag checked and its metadata parsed. A Loader
  /// with `async_load` (dll_loader: its probe) does not block the strand meanwhile. `mapped`
  /// is called once the library is mapped, before the checks.
  awaitable<result<version_ptr>> load(std::filesystem::path file, const std::vector<std::filesystem::path>& dirs,
                                      const std::function<void()>& mapped = {}) {
    if (auto err = check_trust(file, dirs, opts_.trust)) co_return result<version_ptr>{nullptr, err};
    auto lib = co_await policies_.load(file);
    if (lib.error) co_return result<version_ptr>{nullptr, lib.error};
    if (mapped) mapped();
    if (auto err = abi_problem(traits_.tag, *lib.value.tag)) {
      err.message = file.string() + " was refused: " + err.message;
      co_return result<version_ptr>{nullptr, err};
    }
    plugin_metadata meta;
    if (auto err = parse_metadata(lib.value.metadata, file.string(), meta)) co_return result<version_ptr>{nullptr, err};
    auto findings = inspect_loaded(lib.value.image, lib.value.tag);
    warn_about(meta, findings);
    co_return result<version_ptr>{own(new version{std::move(lib.value), std::move(meta), std::move(findings)})};
  }

  /// load() of each file, concurrently (their probes run side by side).
  awaitable<std::vector<result<version_ptr>>> load_all(const std::vector<std::filesystem::path>& files,
                                                       const std::vector<std::filesystem::path>& dirs,
                                                       std::function<void()> mapped = {}) {
    std::vector<result<version_ptr>> loaded(files.size());
    co_await run_dag(strand_, predecessor_lists(files.size()), [&](std::size_t i) -> awaitable<void> {
      loaded[i] = co_await load(files[i], dirs, mapped);
    });
    co_return loaded;
  }

  /// Step 5: the call that makes a new instance of `v` (the plugin's factory, given its
  /// context) and puts it in `out`; the hook runner runs it on a hook thread. Its deleter runs
  /// the plugin's destructor and then releases the version, so the code outlives the object.
  /// The call holds nothing of the reloader's: an abandoned constructor may return after the
  /// reloader is gone.
  awaitable<void> construct(const version_ptr& v, std::shared_ptr<result<instance>> out) {
    const auto& name = v->meta.name;
    auto cfg = opts_.plugin_config.if_contains(name);
    plugin_context ctx(name, policies_.executor_keeping(held_by_plugin_objects(v)),
                       plugin_logger(hub_.get_logger(), name),
                       cfg && cfg->is_object() ? cfg->get_object() : boost::json::object(), opts_.shared,
                       resolver_for(v->meta));
    return create(std::move(ctx), v, traits_, std::move(out));
  }

  /// Where the background thread's wake-up for a version let go is handed when a hook thread
  /// is awake (a reload completing): that thread pays for it, not the program's (versions are
  /// let go on the program's executor, or in callers' threads with their last plugin_ptr).
  void hand_unmapping_to(hook_threads::awake_hand h) { hand_ = std::move(h); }

private:
  static awaitable<void> create(plugin_context ctx, version_ptr v, interface_traits traits,
                                std::shared_ptr<result<instance>> out) {
    std::string why;
    void* raw = v->library.create(ctx, why);
    if (!raw) {
      const auto& name = v->meta.name;
      *out = {{}, fail(errc::construct_failed, name,
                       "plugin '" + name + "' " + v->meta.version + ": constructor threw: " + why +
                           "; fix the constructor (do slow or failing work in setup_async)")};
      co_return;
    }
    *out = {instance{std::shared_ptr<plugin>(traits.upcast(raw), [v](plugin* p) { delete p; }), raw}};
  }

  // The last reference may drop anywhere (for what the plugin's own objects hold, see
  // held_by_plugin_objects), so the unmapping always runs later: in the background, off the
  // strand, so that callers do not queue behind it (dlclose runs the
  // library's static destructors; removing the shadow copy frees its blocks: 60-70 us for a
  // small library here). Then the strand hears of it.
  version_ptr own(const version* raw) {
    hub_.version_mapped();
    return version_ptr(raw, [hub = weak_hub_, reg = weak_reg_, mail = mail_, hand = hand_](const version* v) {
      if (hub.expired()) {
        // The reloader is gone, so no handler of ours can unmap it, and the caller may be
        // this very library's code. It stays mapped until the process exits.
        deliberately_leak(v);
        return;
      }
      auto unmap = [hub, reg, mail, owned = std::shared_ptr<const version>(v)]() mutable {
        std::string name = owned->meta.name, ver = owned->meta.version;
        auto image = owned->library.image;
        auto findings = owned->findings; // what may pin it: for the message, if it is pinned
        owned.reset();
        bool pinned = still_loaded(image); // never reported as unloaded if it is not
        auto causes = pinned ? pin_causes(findings) : std::string();
        if (hub.expired()) return; // the reloader is gone (and its mailbox closed)
        mail->post([hub, reg, name, ver, pinned, causes] {
          if (pinned)
            if (auto r = reg.lock()) r->count(name, &plugin_info::pinned_versions, +1);
          if (auto h = hub.lock()) h->version_released(name, ver, pinned ? &causes : nullptr);
        });
      };
      // The background thread runs it, after the jobs queued there for its next wake-up.
      std::function<void()> wake = [unmap = std::move(unmap)]() mutable { in_background(std::move(unmap)); };
      if (!hand(wake)) wake();
    });
  }

  // What the plugin's own objects hold of their version, through their context's executor:
  // every I/O object and pending operation of theirs keeps a copy. The last copy may go inside
  // the plugin's code: an operation's completion (Asio's code, instantiated in the plugin's
  // library) destroys the operation's executor, and then returns through that code, or runs on
  // in it (an executor or handler of the plugin's own whose destructor does more work). So the
  // version is let go in a handler deferred on the program's executor, which starts only after
  // the handler that let it go has returned. Once the reloader is gone there is no executor
  // known to be alive: the version stays mapped, as own() does then.
  std::shared_ptr<const void> held_by_plugin_objects(version_ptr v) const {
    struct hold {
      version_ptr v;
      std::shared_ptr<strand_mailbox> mail;
      ~hold() {
        auto release = [v = std::move(v)] {};
        if (!mail || !mail->defer(std::move(release))) deliberately_leak(new auto(std::move(release)));
      }
    };
    return std::make_shared<const hold>(hold{std::move(v), mail_});
  }

  // What the library file shows will keep this version from unloading, said at load time.
  void warn_about(const plugin_metadata& m, const elf_findings& f) const {
    auto who = "plugin '" + m.name + "' " + m.version;
    if (f.unique_count)
      hub_.log(log_level::warning, m.name,
               who + " cannot be unloaded: its library has " + std::to_string(f.unique_count) +
                   " STB_GNU_UNIQUE symbol(s), e.g. " + f.unique_symbols.front() +
                   ", so dlclose keeps it mapped and a new version shares its static variables; build it with "
                   "-fno-gnu-unique (the hotreload-plugin dependency adds it)");
    if (f.thread_local_destructors)
      hub_.log(log_level::warning, m.name,
               who + " has thread_local objects with destructors: once one is touched on a thread that lives on "
                     "(an io_context thread), this version stays mapped after it is replaced; keep such state in "
                     "the plugin object instead");
  }

  // What plugin_context::get asks. Callable from any thread, for as long as the plugin lives:
  // it reaches the registry only while the reloader exists. The handle it returns is not a
  // lease, so a dependent holding it does not hold up its dependency's reloads.
  dependency_resolver resolver_for(const plugin_metadata& m) const {
    return [reg = weak_reg_, log = hub_.get_logger(), declared = m.depends_on,
            who = m.name](std::string_view name) -> plugin_ptr<plugin> {
      auto r = reg.lock();
      if (!r) return {};
      if (!depends_on(declared, name)) {
        log.log(log_level::error, who,
                "plugin '" + who + "' asked for '" + std::string(name) + "', which it does not declare in \"depends_on\"");
        return {};
      }
      auto l = r->lock();
      if (!l.open()) return {};
      auto it = l.entries().find(name);
      if (it == l.entries().end() || !l[*it->second].lease) return {};
      auto& lease = l[*it->second].lease;
      return plugin_ptr<plugin>(lease->inst.object, &lease->ver->meta);
    };
  }

  const options& opts_;
  strand_t strand_;
  event_hub& hub_;
  policy_ops& policies_;
  interface_traits traits_;
  std::weak_ptr<event_hub> weak_hub_;
  std::weak_ptr<registry> weak_reg_;
  std::shared_ptr<strand_mailbox> mail_; // the strand, for the background thread
  hook_threads::awake_hand hand_;
};

} // namespace hotreload::detail

#endif
