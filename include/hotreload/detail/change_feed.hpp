#ifndef HOTRELOAD_DETAIL_CHANGE_FEED_HPP
#define HOTRELOAD_DETAIL_CHANGE_FEED_HPP

// The change feed: which directories hold plugins, which files in them are plugin libraries,
// and what a watcher's raw reports come to once filtered and debounced. Strand only.

#include <hotreload/detail/event_hub.hpp>
#include <hotreload/detail/linux/files.hpp>
#include <hotreload/detail/result.hpp>
#include <hotreload/detail/sync.hpp>
#include <hotreload/options.hpp>
#include <hotreload/watcher/watcher.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <fnmatch.h>

namespace hotreload::detail {

/// What a debounce window came to.
struct change_batch {
  bool rescan = false;                         // look at every directory again instead
  std::vector<std::filesystem::path> removed;  // files reported removed and still gone
  std::vector<std::filesystem::path> changed;  // files that may be new or changed
};

class change_feed {
public:
  change_feed(const options& o, event_hub& hub) : opts_(o), hub_(hub) {}

  /// The plugin directories: options.plugin_dirs, then the environment variable's entries
  /// (':'-separated), absolute, sorted, without duplicates. Fixed for one start.
  const std::vector<std::filesystem::path>& dirs() const noexcept { return dirs_; }
  void read_dirs() {
    dirs_ = opts_.plugin_dirs;
    if (!opts_.paths_env.empty())
      if (const char* env = std::getenv(opts_.paths_env.c_str())) {
        std::string_view rest = env;
        while (!rest.empty()) {
          auto part = rest.substr(0, rest.find(':'));
          rest.remove_prefix(std::min(rest.size(), part.size() + 1));
          if (!part.empty()) dirs_.emplace_back(part);
        }
      }
    for (auto& d : dirs_) d = std::filesystem::absolute(d).lexically_normal();
    std::sort(dirs_.begin(), dirs_.end());
    dirs_.erase(std::unique(dirs_.begin(), dirs_.end()), dirs_.end());
  }

  /// The ReloadTrigger: why a changed file is not a plugin library to act on, or nothing.
  std::optional<std::string> ignored_because(const std::filesystem::path& file) const {
    auto name = file.filename().string();
    if (!name.ends_with(opts_.library_suffix)) return "not a " + opts_.library_suffix + " file";
    if (name.ends_with(".swp") || name.ends_with("~") || name.starts_with(".#")) return "an editor temporary";
    auto inside = [&](const std::filesystem::path& dir) {
      auto rel = file.lexically_relative(dir);
      return !rel.empty() && *rel.begin() != "..";
    };
    auto root = std::find_if(dirs_.begin(), dirs_.end(), inside);
    if (root == dirs_.end()) return "outside the plugin directories";
    for (auto& part : file.lexically_relative(*root))
      if (part.string().starts_with(".")) return "hidden";
    if (!opts_.shadow_dir.empty() && inside(std::filesystem::absolute(opts_.shadow_dir).lexically_normal()))
      return "in the shadow-copy directory";
    auto matches = [&](const std::vector<std::string>& globs) {
      return std::any_of(globs.begin(), globs.end(),
                         [&](const std::string& g) { return ::fnmatch(g.c_str(), name.c_str(), 0) == 0; });
    };
    if (!opts_.include.empty() && !matches(opts_.include)) return "not matched by options.include";
    if (matches(opts_.exclude)) return "matched by options.exclude";
    return std::nullopt;
  }

  /// Every plugin library under the plugin directories, sorted; with the first unusable
  /// directory as the error (only logged with options.allow_missing_dirs).
  result<std::vector<std::filesystem::path>> scan() const {
    result<std::vector<std::filesystem::path>> out;
    for (auto& dir : dirs_) {
      std::error_code ec;
      std::string why;
      if (!std::filesystem::is_directory(dir, ec))
        why = "does not exist or is not a directory";
      else if (auto rec = for_each_file(dir, [&](const std::filesystem::path& f) {
                 if (!ignored_because(f)) out.value.push_back(f);
               }))
        why = "cannot be read (" + rec.message() + ")";
      if (why.empty()) continue;
      auto err = fail(errc::bad_plugin_dir, {},
                      "plugin directory " + dir.string() + " " + why +
                          "; create it, fix its permissions, or fix options.plugin_dirs / $" + opts_.paths_env);
      if (!opts_.allow_missing_dirs) {
        out.error = err;
        break;
      }
      hub_.log(log_level::warning, {}, err.message);
    }
    std::sort(out.value.begin(), out.value.end());
    return out;
  }

  /// Takes a watcher's report: what concerns plugin libraries joins the debounce window.
  /// True if a window opened, so that someone must now await settle().
  bool take(std::vector<file_change> changes) {
    bool settled = !changes.empty();
    for (auto& c : changes) {
      note(c);
      settled = settled && c.settled;
    }
    if (pending_.empty() && !rescan_pending_) return false;
    auto now = clock::now();
    if (!window_start_) window_start_ = now;
    // Each change restarts the window, up to ten windows after the first change; changes
    // whose writer is known to be done close it at once.
    window_end_ = settled ? now : std::min(now + opts_.debounce, *window_start_ + 10 * opts_.debounce);
    if (settled)
      if (auto wake = wake_.lock()) wake->set();
    return !std::exchange(settling_, true);
  }

  /// Waits until the window has passed; what it came to, or nothing if clear() came first.
  awaitable<std::optional<change_batch>> settle() {
    auto gen = generation_;
    while (gen == generation_ && clock::now() < window_end_) {
      auto wake = std::make_shared<async_event>();
      wake_ = wake;
      co_await wake->wait_until(window_end_);
    }
    if (gen != generation_) co_return std::nullopt;
    settling_ = false;
    window_start_.reset();
    change_batch batch;
    batch.rescan = std::exchange(rescan_pending_, false);
    for (auto& [path, kind] : std::exchange(pending_, {}))
      (kind == change_kind::removed && !stamp_of(path) ? batch.removed : batch.changed).push_back(path);
    co_return batch;
  }

  /// Drops what is pending and ends the settle() under way (at stop).
  void clear() {
    ++generation_;
    pending_.clear();
    rescan_pending_ = settling_ = false;
    window_start_.reset();
    if (auto wake = wake_.lock()) wake->set();
  }

private:
  void note(const file_change& c) {
    if (c.kind == change_kind::rescan) {
      hub_.log(log_level::info, {},
               "Rescanning every plugin directory (events were lost or a rescan was asked for, under " +
                   c.path.string() + ")");
      rescan_pending_ = true;
      return;
    }
    if (c.kind == change_kind::removed && std::find(dirs_.begin(), dirs_.end(), c.path) != dirs_.end()) {
      hub_.log(log_level::warning, {}, "Plugin directory removed: " + c.path.string() + "; its plugins keep serving");
      return;
    }
    auto why = ignored_because(c.path);
    if (hub_.debug_on())
      hub_.log(log_level::debug, {},
               "Should reload " + c.path.string() + ": " + (why ? "no, " + *why : std::string("yes")));
    if (why) return;
    const char* what = c.kind == change_kind::removed   ? "removed "
                       : c.kind == change_kind::created ? "created "
                                                        : "modified ";
    hub_.log(log_level::info, {}, "File change detected: " + std::string(what) + c.path.string());
    pending_[c.path] = c.kind;
  }

  const options& opts_;
  event_hub& hub_;
  std::vector<std::filesystem::path> dirs_;
  std::map<std::filesystem::path, change_kind> pending_; // the window's changes, by file
  bool rescan_pending_ = false;
  bool settling_ = false;                                // a settle() is awaited
  std::optional<clock::time_point> window_start_;
  clock::time_point window_end_{};
  std::uint64_t generation_ = 0;                         // bumped by clear()
  std::weak_ptr<async_event> wake_;                      // what settle() sleeps on
};

} // namespace hotreload::detail

#endif
