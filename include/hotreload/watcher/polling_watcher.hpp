#ifndef HOTRELOAD_WATCHER_POLLING_WATCHER_HPP
#define HOTRELOAD_WATCHER_POLLING_WATCHER_HPP

#include <hotreload/config.hpp>
#include <hotreload/detail/linux/files.hpp>
#include <hotreload/options.hpp>
#include <hotreload/watcher/watcher.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <map>
#include <memory>

namespace hotreload {

/// The portable Watcher: scans the directories every options.poll_interval on an Asio
/// timer and compares each file's device, inode, size and nanosecond mtime (so two builds
/// in the same second are two changes). A file is reported once it has looked the same on
/// two consecutive scans, so a write in progress is not reported half-done. Only files whose
/// name ends with options.library_suffix are looked at (every file if it is empty): each scan
/// costs a listing of every directory and one stat per library.
class polling_watcher {
public:
  polling_watcher(asio::any_io_executor ex, const options& opts)
      : strand_(asio::make_strand(std::move(ex))), interval_(opts.poll_interval), suffix_(opts.library_suffix) {}
  explicit polling_watcher(asio::any_io_executor ex) : polling_watcher(std::move(ex), options{}) {}
  polling_watcher(const polling_watcher&) = delete;
  polling_watcher& operator=(const polling_watcher&) = delete;
  polling_watcher(polling_watcher&&) = default;
  ~polling_watcher() { stop(); }

  error_info start(const std::vector<std::filesystem::path>& dirs, change_handler on_change) {
    stop();
    auto st = std::make_shared<state>(strand_, dirs, std::move(on_change), interval_, suffix_);
    st->reported = st->scan();
    st->previous = st->reported;
    for (auto& r : dirs) {
      std::error_code ec;
      st->root_present[r] = std::filesystem::is_directory(r, ec);
    }
    st_ = st;
    asio::post(strand_, [st] { st->schedule(); });
    return {};
  }

  void stop() {
    if (auto st = std::exchange(st_, nullptr))
      asio::post(strand_, [st] {
        st->stopped = true;
        st->timer.cancel();
      });
  }

  /// Delivers an overflow for every root, as a lost-event condition would.
  void inject_overflow() {
    if (auto st = st_)
      asio::post(strand_, [st] {
        std::vector<file_change> out;
        for (auto& r : st->roots) out.push_back({change_kind::rescan, r});
        st->handler(std::move(out));
      });
  }

  std::chrono::milliseconds interval() const noexcept { return interval_; }

private:
  using snapshot = std::map<std::filesystem::path, detail::file_stamp>;

  struct state : std::enable_shared_from_this<state> {
    state(asio::strand<asio::any_io_executor> s, std::vector<std::filesystem::path> r, change_handler h,
          std::chrono::milliseconds i, std::string suffix)
        : timer(s), roots(std::move(r)), handler(std::move(h)), interval(i), suffix(std::move(suffix)) {}

    asio::steady_timer timer;
    std::vector<std::filesystem::path> roots;
    change_handler handler;
    std::chrono::milliseconds interval;
    std::string suffix;
    snapshot reported; // what the handler was last told
    snapshot previous; // the scan before this one
    std::map<std::filesystem::path, bool> root_present;
    bool stopped = false;

    snapshot scan() {
      snapshot out;
      for (auto& r : roots)
        detail::for_each_file(r, [&](const std::filesystem::path& p) {
          if (!p.native().ends_with(suffix)) return;
          if (auto s = detail::stamp_of(p)) out.emplace(p, *s);
        });
      return out;
    }

    void schedule() {
      if (stopped) return;
      timer.expires_after(interval);
      timer.async_wait([self = shared_from_this()](boost::system::error_code ec) {
        if (!ec && !self->stopped) self->poll();
      });
    }

    void poll() {
      auto now = scan();
      std::vector<file_change> changes;
      for (auto& r : roots) {
        std::error_code ec;
        bool present = std::filesystem::is_directory(r, ec);
        auto [it, fresh] = root_present.try_emplace(r, true);
        if (it->second && !present) changes.push_back({change_kind::removed, r});
        it->second = present;
      }
      for (auto& [path, stamp] : now) {
        auto rep = reported.find(path);
        if (rep != reported.end() && rep->second == stamp) continue;
        auto prev = previous.find(path);
        if (prev == previous.end() || prev->second != stamp) continue; // still changing
        changes.push_back({rep == reported.end() ? change_kind::created : change_kind::modified, path});
        reported[path] = stamp;
      }
      for (auto it = reported.begin(); it != reported.end();) {
        if (!now.contains(it->first)) {
          changes.push_back({change_kind::removed, it->first});
          it = reported.erase(it);
        } else {
          ++it;
        }
      }
      previous = std::move(now);
      if (!changes.empty()) handler(std::move(changes));
      schedule();
    }
  };

  asio::strand<asio::any_io_executor> strand_;
  std::chrono::milliseconds interval_;
  std::string suffix_;
  std::shared_ptr<state> st_;
};

static_assert(watcher<polling_watcher>);

} // namespace hotreload

#endif
