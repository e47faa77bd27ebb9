#ifndef HOTRELOAD_DETAIL_REGISTRY_HPP
#define HOTRELOAD_DETAIL_REGISTRY_HPP

// The plugins the reloader knows, one entry each. An entry's fields come in two kinds, and
// the types keep them apart:
// - strand-only fields (the serving version and instance, the entry's async mutex, the
//   callers waiting for it): public members, touched only by the reloader's strand;
// - guarded fields (the lease try_get hands out, enabled, the listing): read by any thread,
//   reachable only through registry::locked, which holds the registry's mutex.

#include <hotreload/detail/engine_types.hpp>
#include <hotreload/detail/linux/elf.hpp>
#include <hotreload/detail/linux/files.hpp>
#include <hotreload/detail/graph.hpp>
#include <hotreload/detail/sync.hpp>
#include <hotreload/loader/loader.hpp>
#include <hotreload/metadata.hpp>
#include <hotreload/plugin.hpp>
#include <hotreload/plugin_info.hpp>

#include <array>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace hotreload::detail {

/// One loaded version of a plugin's library.
struct version {
  loaded_library library;
  plugin_metadata meta;
  elf_findings findings; // what may keep it from unloading
};
using version_ptr = std::shared_ptr<const version>;

inline const plugin_metadata* meta_of(const version_ptr& v) { return v ? &v->meta : nullptr; }

/// A plugin object: as the plugin base the hooks are called on, and as the host's interface
/// (the factory's pointer, which only the typed front end casts back).
struct instance {
  std::shared_ptr<plugin> object;
  void* iface = nullptr;
  explicit operator bool() const noexcept { return object != nullptr; }
};

/// What a lease tells the reload waiting for it when its last plugin_ptr is gone.
struct release_signal {
  std::mutex mu;
  bool released = false;
  std::function<void()> wake;
};

/// What plugin_ptrs share: one publication of one instance.
struct lease_block {
  lease_block(instance i, version_ptr v) : inst(std::move(i)), ver(std::move(v)) {}
  lease_block(const lease_block&) = delete;
  lease_block& operator=(const lease_block&) = delete;
  ~lease_block() {
    std::lock_guard lk(signal->mu);
    signal->released = true;
    if (signal->wake) signal->wake();
  }
  instance inst;
  version_ptr ver;
  std::shared_ptr<release_signal> signal = std::make_shared<release_signal>();
};

/// The fields any thread may read: only through registry::locked.
struct guarded_fields {
  std::filesystem::path source; // the library file in the plugin directory
  lease_ptr lease;              // what try_get hands out (null: nothing serves)
  bool enabled = true;
  bool quiescing = true;        // a reload or start is under way: async_get waits
  plugin_info info;
};

class entry {
public:
  explicit entry(std::string n) : name(std::move(n)) {}
  const std::string name;
  // Strand only.
  version_ptr ver;                   // the serving version (null: none)
  instance inst;                     // its instance
  async_mutex lock;                  // held by whatever changes ver/inst: functions named `*_locked` need it held
  std::vector<waiter> waiters;       // async_get callers waiting for the end of a reload
  bool removed = false;              // stopped; no longer in the registry
  std::optional<file_stamp> tried;   // the library file as last loaded (or tried)
  version_ptr waiting;               // loaded, waiting for its dependencies to serve

private:
  friend class registry;
  guarded_fields guarded_;
};
using entry_ptr = std::shared_ptr<entry>;

/// Holds entries' async mutexes; unlocks them all when it goes (also when the coroutine
/// holding it is destroyed).
class entry_locks {
public:
  entry_locks() = default;
  entry_locks(const entry_locks&) = delete;
  entry_locks& operator=(const entry_locks&) = delete;
  ~entry_locks() {
    for (auto& e : held_) e->lock.unlock();
  }
  awaitable<void> add(entry_ptr e) {
    co_await e->lock.lock();
    held_.push_back(std::move(e));
  }

private:
  std::vector<entry_ptr> held_;
};

/// The entries by name, behind one mutex, with try_get's per-thread cache.
class registry {
public:
  using map = std::map<std::string, entry_ptr, std::less<>>;

  /// Exclusive access to the entries and their guarded fields.
  class locked {
  public:
    explicit locked(registry& r) : lk_(r.mu_), r_(r) {}
    guarded_fields& operator[](entry& e) noexcept { return e.guarded_; }
    map& entries() noexcept { return r_.entries_; }
    bool open() const noexcept { return r_.open_; }
    /// What try_get would answer changed: per-thread caches go stale.
    void changed() noexcept { r_.publication_.fetch_add(1, std::memory_order_release); }

  private:
    std::unique_lock<std::mutex> lk_;
    registry& r_;
  };
  locked lock() { return locked(*this); }

  entry_ptr find(std::string_view name) {
    auto l = lock();
    auto it = l.entries().find(name);
    return it == l.entries().end() ? nullptr : it->second;
  }
  entry_ptr find_by_source(const std::filesystem::path& file) {
    auto l = lock();
    for (auto& [name, e] : l.entries())
      if (l[*e].source == file) return e;
    return nullptr;
  }
  std::filesystem::path source_of(entry& e) { return lock()[e].source; }
  std::vector<entry_ptr> all() {
    auto l = lock();
    std::vector<entry_ptr> out;
    for (auto& [name, e] : l.entries()) out.push_back(e);
    return out;
  }
  /// The serving version of every plugin (strand only: it reads `ver`).
  version_map serving() {
    auto l = lock();
    version_map out;
    for (auto& [name, e] : l.entries()) out[name] = meta_of(e->ver);
    return out;
  }
  std::vector<plugin_info> infos() {
    auto l = lock();
    std::vector<plugin_info> out;
    for (auto& [name, e] : l.entries()) out.push_back(l[*e].info);
    return out;
  }
  std::optional<plugin_info> info(std::string_view name) {
    auto l = lock();
    auto it = l.entries().find(name);
    if (it == l.entries().end()) return std::nullopt;
    return l[*it->second].info;
  }
  /// Sets the enabled flag; whether it changed.
  bool set_enabled(entry& e, bool on) {
    auto l = lock();
    if (l[e].enabled == on) return false;
    l[e].enabled = on;
    l[e].info.enabled = on;
    l.changed();
    return true;
  }
  void erase(const std::string& name) {
    auto l = lock();
    l.entries().erase(name);
    l.changed();
  }
  bool is_open() { return lock().open(); }
  /// One of `name`'s counters in its listing changes by `delta` (a version pinned, a call
  /// abandoned or returned).
  void count(std::string_view name, std::size_t plugin_info::*counter, int delta) {
    auto l = lock();
    if (auto it = l.entries().find(name); it != l.entries().end()) l[*it->second].info.*counter += delta;
  }
  /// Nothing is handed out any more; the entries (and the instances only they held) are
  /// destroyed, after the mutex is released: plugin destructors may run.
  void close() {
    map gone;
    std::vector<lease_ptr> leases;
    {
      auto l = lock();
      open_ = false;
      for (auto& [name, e] : entries_) leases.push_back(std::move(l[*e].lease));
      l.changed();
      gone = std::exchange(entries_, {});
    }
  }

  /// The serving lease of `name`, never waiting: null if it is unknown, disabled, being
  /// reloaded or failed. Answers repeated questions from a per-thread cache.
  lease_ptr try_get(std::string_view name) {
    // A cached weak reference can only be locked while its version still serves or is still
    // held; a change bumps publication_, sending callers to the locked path.
    auto& cache = try_get_cache();
    auto publication = publication_.load(std::memory_order_acquire);
    for (auto& c : cache.slots)
      if (c.owner == id_ && c.publication == publication && c.name == name) {
        if (auto l = c.lease.lock()) return l;
        break;
      }
    auto l = lock();
    auto it = l.entries().find(name);
    if (it == l.entries().end()) return nullptr;
    auto& g = l[*it->second];
    if (!g.enabled || g.quiescing || !g.lease) return nullptr;
    auto& slot = cache.slots[cache.next++ % cache.slots.size()];
    slot = {id_, publication_.load(std::memory_order_relaxed), std::string(name), g.lease};
    return g.lease;
  }

private:
  struct try_get_slot {
    std::uint64_t owner = 0;       // id_ of the registry
    std::uint64_t publication = 0; // its publication_ when cached
    std::string name;
    std::weak_ptr<lease_block> lease;
  };
  struct try_get_slots {
    std::array<try_get_slot, 4> slots;
    unsigned next = 0;
  };
  static try_get_slots& try_get_cache() {
    thread_local try_get_slots cache;
    return cache;
  }
  static std::uint64_t next_id() {
    static std::atomic<std::uint64_t> next{1};
    return next.fetch_add(1, std::memory_order_relaxed);
  }

  std::mutex mu_;
  map entries_;
  bool open_ = true;
  std::atomic<std::uint64_t> publication_{1};
  const std::uint64_t id_ = next_id(); // never reused, unlike an address
};

} // namespace hotreload::detail

#endif
