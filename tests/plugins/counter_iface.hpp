// The interface the test host and the test plugins share.
#ifndef HOTRELOAD_TESTS_COUNTER_IFACE_HPP
#define HOTRELOAD_TESTS_COUNTER_IFACE_HPP

#include <hotreload/plugin.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

namespace test {

/// What the host shares with the plugins: a journal of hook calls, in order, and a gate
/// that plugin code can block its thread on until the test opens it.
struct journal {
  std::mutex mu;
  std::condition_variable changed;
  std::vector<std::string> lines;
  bool open = false;
  // For a plugin that leaves an operation pending (counter_lingering): a descriptor it waits
  // on, and whether executor copies of its own linger in plugin code when destroyed.
  int wake_fd = -1;
  std::atomic<bool> linger{false};
  int blocked = 0; // threads blocked at the gate now
  void add(std::string line) {
    std::lock_guard lk(mu);
    lines.push_back(std::move(line));
  }
  std::vector<std::string> take() {
    std::lock_guard lk(mu);
    return std::exchange(lines, {});
  }
  void block() {
    std::unique_lock lk(mu);
    ++blocked;
    changed.notify_all(); // for a test waiting until plugin code is held here
    changed.wait(lk, [&] { return open; });
    --blocked;
  }
  void release() {
    std::lock_guard lk(mu);
    open = true;
    changed.notify_all();
  }
  std::size_t count(const std::string& line) {
    std::lock_guard lk(mu);
    return static_cast<std::size_t>(std::count(lines.begin(), lines.end(), line));
  }
};

// A plugin variant may be built against another version of this interface (the ABI tests).
#ifndef COUNTER_INTERFACE_VERSION
#define COUNTER_INTERFACE_VERSION 1
#endif

struct counter_iface : hotreload::plugin {
  using interface_type = counter_iface;
  static constexpr unsigned interface_version = COUNTER_INTERFACE_VERSION;
  virtual std::string version() const = 0;
  virtual int increment() = 0;
  virtual int count() const = 0;
  /// Pending heartbeat completions (a timer the plugin keeps armed on its executor).
  virtual int heartbeats() const = 0;
};

/// Another interface, for ABI mismatch tests.
struct other_iface : hotreload::plugin {
  using interface_type = other_iface;
  virtual int answer() const = 0;
};

} // namespace test

#endif
