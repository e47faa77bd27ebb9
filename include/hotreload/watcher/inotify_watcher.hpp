#ifndef HOTRELOAD_WATCHER_INOTIFY_WATCHER_HPP
#define HOTRELOAD_WATCHER_INOTIFY_WATCHER_HPP

#include <hotreload/config.hpp>
#include <hotreload/detail/linux/files.hpp>
#include <hotreload/watcher/watcher.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/strand.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <string>

#include <sys/inotify.h>
#include <unistd.h>

namespace hotreload {

/// The default Watcher on Linux: inotify, read through an Asio stream_descriptor on the
/// reloader's io_context (no thread of its own, no CPU while nothing changes). Watches the
/// directories recursively, follows directories created or moved in later (and reports the
/// files already inside them), and reports a finished write (IN_CLOSE_WRITE) or a rename
/// into place (IN_MOVED_TO), never a write in progress. A kernel queue overflow is reported
/// as change_kind::rescan for every root, so the reloader rescans.
class inotify_watcher {
public:
  explicit inotify_watcher(asio::any_io_executor ex) : strand_(asio::make_strand(std::move(ex))) {}
  inotify_watcher(const inotify_watcher&) = delete;
  inotify_watcher& operator=(const inotify_watcher&) = delete;
  inotify_watcher(inotify_watcher&&) = default;
  ~inotify_watcher() { stop(); }

  error_info start(const std::vector<std::filesystem::path>& dirs, change_handler on_change) {
    stop();
    int fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0)
      return {make_error_code(errc::bad_plugin_dir), {},
              std::string("inotify_init1 failed: ") + std::strerror(errno) +
                  "; raise fs.inotify.max_user_instances or use polling_watcher"};
    auto st = std::make_shared<state>(strand_, fd, dirs, std::move(on_change));
    for (auto& d : dirs) {
      std::vector<file_change> ignored;
      if (auto err = st->add_tree(d, ignored, false)) return err;
    }
    st_ = st;
    asio::post(strand_, [st] { st->read(); });
    return {};
  }

  void stop() {
    if (auto st = std::exchange(st_, nullptr)) asio::post(strand_, [st] { st->close(); });
  }

  /// Delivers what an IN_Q_OVERFLOW delivers: an overflow for every watched root. For
  /// tests, and for hosts that know events were lost.
  void inject_overflow() {
    if (auto st = st_) asio::post(strand_, [st] { st->deliver(st->overflow()); });
  }

  /// Directories watched right now.
  std::size_t watch_count() const { return st_ ? st_->watch_count.load() : 0; }

private:
  static constexpr std::uint32_t mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                                        IN_DELETE_SELF | IN_ONLYDIR | IN_EXCL_UNLINK;

  struct state : std::enable_shared_from_this<state> {
    state(asio::strand<asio::any_io_executor> s, int fd, std::vector<std::filesystem::path> r, change_handler h)
        : stream(s, fd), roots(std::move(r)), handler(std::move(h)) {}

    asio::posix::stream_descriptor stream;
    std::vector<std::filesystem::path> roots;
    change_handler handler;
    std::map<int, std::filesystem::path> dirs; // watch descriptor -> directory
    // Watches on the parents of roots that do not exist (yet, or any more), to notice
    // them (re)appear: watch descriptor -> parent directory.
    std::map<int, std::filesystem::path> parents;
    std::atomic<std::size_t> watch_count{0};
    bool closed = false;
    alignas(inotify_event) std::array<char, 64 * 1024> buffer;

    // Watches `dir` and its subdirectories; with `report`, every file already inside is
    // reported as created (it may have been written before the watch existed).
    error_info add_tree(const std::filesystem::path& dir, std::vector<file_change>& out, bool report) {
      int wd = ::inotify_add_watch(stream.native_handle(), dir.c_str(), mask);
      if (wd < 0) {
        if (errno == ENOENT || errno == ENOTDIR) { // gone already
          if (is_root(dir)) await_root(dir, out);
          return {};
        }
        return {make_error_code(errc::bad_plugin_dir), {},
                "cannot watch " + dir.string() + ": " + std::strerror(errno) +
                    (errno == ENOSPC ? "; raise fs.inotify.max_user_watches or use polling_watcher" : "")};
      }
      dirs[wd] = dir;
      watch_count = dirs.size();
      std::error_code ec;
      for (auto& e : std::filesystem::directory_iterator(dir, ec)) {
        auto name = e.path().filename().string();
        if (name.empty() || name[0] == '.') continue;
        std::error_code tec;
        if (e.is_directory(tec)) {
          if (auto err = add_tree(e.path(), out, report)) return err;
        } else if (report && e.is_regular_file(tec)) {
          out.push_back({change_kind::created, e.path()});
        }
      }
      return {};
    }

    static std::filesystem::path normal(const std::filesystem::path& p) {
      auto n = p.lexically_normal();
      return n.has_filename() ? n : n.parent_path();
    }
    bool is_root(const std::filesystem::path& dir) const {
      return std::any_of(roots.begin(), roots.end(), [&](auto& r) { return normal(r) == normal(dir); });
    }

    // A root that does not exist: watch its parent until it appears, then watch it and
    // report what it holds. (A parent that is itself watched reports it anyway.)
    void await_root(const std::filesystem::path& root, std::vector<file_change>& out) {
      auto parent = normal(root).parent_path();
      if (parent.empty()) parent = ".";
      int wd = ::inotify_add_watch(stream.native_handle(), parent.c_str(),
                                   IN_CREATE | IN_MOVED_TO | IN_ONLYDIR | IN_MASK_ADD);
      if (wd < 0 || dirs.contains(wd)) return;
      parents[wd] = parent;
      std::error_code ec;
      if (std::filesystem::is_directory(root, ec)) root_appeared(wd, root, out); // appeared meanwhile
    }
    void root_appeared(int parent_wd, const std::filesystem::path& root, std::vector<file_change>& out) {
      ::inotify_rm_watch(stream.native_handle(), parent_wd);
      parents.erase(parent_wd);
      for (auto& r : roots)
        if (normal(r) == normal(root)) add_tree(r, out, true);
    }

    void forget_tree(const std::filesystem::path& dir) {
      for (auto it = dirs.begin(); it != dirs.end();) {
        auto rel = it->second.lexically_relative(dir);
        if (!rel.empty() && *rel.begin() != "..") {
          ::inotify_rm_watch(stream.native_handle(), it->first);
          it = dirs.erase(it);
        } else {
          ++it;
        }
      }
      watch_count = dirs.size();
    }

    std::vector<file_change> overflow() const {
      std::vector<file_change> out;
      for (auto& r : roots) out.push_back({change_kind::rescan, r});
      return out;
    }

    void deliver(std::vector<file_change> changes) {
      if (!closed && !changes.empty()) handler(std::move(changes));
    }

    void close() {
      closed = true;
      boost::system::error_code ignored;
      stream.close(ignored);
    }

    void read() {
      if (closed) return;
      stream.async_read_some(asio::buffer(buffer),
                             [self = shared_from_this()](boost::system::error_code ec, std::size_t n) {
                               self->on_read(ec, n);
                             });
    }

    void on_read(boost::system::error_code ec, std::size_t n) {
      if (closed || ec == asio::error::operation_aborted) return;
      if (ec) return; // the descriptor failed: nothing more will come
      std::vector<file_change> changes;
      for (std::size_t off = 0; off + sizeof(inotify_event) <= n;) {
        auto* ev = reinterpret_cast<const inotify_event*>(buffer.data() + off);
        off += sizeof(inotify_event) + ev->len;
        handle(*ev, changes);
      }
      deliver(std::move(changes));
      read();
    }

    void handle(const inotify_event& ev, std::vector<file_change>& out) {
      if (ev.mask & IN_Q_OVERFLOW) {
        auto o = overflow();
        out.insert(out.end(), o.begin(), o.end());
        return;
      }
      if (auto p = parents.find(ev.wd); p != parents.end()) {
        if (ev.mask & IN_IGNORED) parents.erase(p);
        else if ((ev.mask & IN_ISDIR) && ev.len && is_root(p->second / ev.name))
          root_appeared(ev.wd, p->second / ev.name, out);
        return;
      }
      auto it = dirs.find(ev.wd);
      if (it == dirs.end()) return;
      if (ev.mask & IN_IGNORED) { // the directory is gone
        dirs.erase(it);
        watch_count = dirs.size();
        return;
      }
      std::filesystem::path dir = it->second;
      if (ev.mask & IN_DELETE_SELF) {
        if (is_root(dir)) {
          out.push_back({change_kind::removed, dir});
          await_root(dir, out);
        }
        return;
      }
      std::string name = ev.len ? std::string(ev.name) : std::string();
      if (name.empty()) return;
      auto path = dir / name;
      if (ev.mask & IN_ISDIR) {
        if (name[0] == '.') return;
        if (ev.mask & (IN_CREATE | IN_MOVED_TO)) add_tree(path, out, true);
        if (ev.mask & IN_MOVED_FROM) forget_tree(path);
        return;
      }
      if (ev.mask & IN_CLOSE_WRITE) out.push_back({change_kind::modified, path});
      if (ev.mask & IN_MOVED_TO) out.push_back({change_kind::created, path});
      if (ev.mask & (IN_DELETE | IN_MOVED_FROM)) out.push_back({change_kind::removed, path});
    }
  };

  asio::strand<asio::any_io_executor> strand_;
  std::shared_ptr<state> st_;
};

static_assert(watcher<inotify_watcher>);

} // namespace hotreload

#endif
