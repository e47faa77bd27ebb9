#ifndef HOTRELOAD_STATE_PERSISTENT_JSON_STATE_HPP
#define HOTRELOAD_STATE_PERSISTENT_JSON_STATE_HPP

#include <hotreload/error.hpp>
#include <hotreload/log.hpp>
#include <hotreload/options.hpp>
#include <hotreload/state/json_state.hpp>
#include <hotreload/state/state_store.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

namespace hotreload {

/// A State policy that keeps snapshots in memory like json_state and also on disk, in
/// options.state_dir, so that state survives a crash or a restart of the process, not only
/// a reload. Each save is atomic: the snapshot goes to a temporary file which is fsync'ed,
/// renamed over `<plugin>.json`, and the directory fsync'ed; whenever the process dies, the
/// file holds the previous snapshot or the new one, never a mix. At the next start, a file
/// that is corrupt or unreadable is moved aside (`<plugin>.json.corrupt-<time>`, never
/// deleted), reported in the log, and the plugin starts with empty state. Snapshots are
/// written whenever the reloader takes one: at each reload, once the new version (or the old
/// one again) serves, so that callers never wait for the disk; and at async_stop. Without
/// options.state_dir, snapshots stay in memory only, like json_state (logged at start).
class persistent_json_state {
public:
  static constexpr bool preserves_state = true;
  static constexpr bool accepts_every_snapshot = true; // stage() keeps whatever it is given

  explicit persistent_json_state(const options& opts)
      : dir_(opts.state_dir), log_(opts.verbosity, opts.sink) {
    if (dir_.empty())
      log_.log(log_level::info, {},
               "persistent_json_state: no options.state_dir, so state snapshots are kept in memory only");
    remove_stale_temporaries();
  }

  const std::filesystem::path& directory() const noexcept { return dir_; }

  error_info save(std::string_view plugin, const boost::json::object& snapshot) {
    return save(plugin, std::make_shared<const boost::json::object>(snapshot));
  }
  /// Writes the reload's own snapshot, and keeps it in memory without a copy.
  error_info save(std::string_view plugin, snapshot_ptr snapshot) {
    if (auto err = stage(plugin, std::move(snapshot))) return err;
    return commit(plugin);
  }
  /// What a reload calls in its window: keeps the snapshot in memory (without a copy) and
  /// remembers to write it.
  error_info stage(std::string_view plugin, snapshot_ptr snapshot) {
    if (!dir_.empty()) staged_.insert_or_assign(std::string(plugin), snapshot);
    return memory_.save(plugin, std::move(snapshot));
  }
  /// And once callers no longer wait: writes the last snapshot staged for `plugin`, if any.
  error_info commit(std::string_view plugin) {
    auto it = staged_.find(plugin);
    if (it == staged_.end()) return {};
    auto snapshot = std::move(it->second);
    staged_.erase(it);
    return write(plugin, boost::json::serialize(*snapshot));
  }

  std::optional<boost::json::object> load(std::string_view plugin) {
    if (auto s = memory_.load(plugin)) return s;
    if (dir_.empty()) return std::nullopt;
    auto file = file_of(plugin);
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) return std::nullopt;
    std::string why;
    std::ifstream in(file, std::ios::binary);
    std::string text(std::istreambuf_iterator<char>(in), {});
    if (!in.good() && !in.eof()) why = std::string("unreadable: ") + std::strerror(errno);
    else if (auto snapshot = parse_snapshot(text, why)) {
      memory_.save(plugin, *snapshot);
      return snapshot;
    }
    set_aside(plugin, file, why);
    return std::nullopt;
  }

  /// The snapshot in `text` (what a state file holds), or nothing and why not.
  static std::optional<boost::json::object> parse_snapshot(std::string_view text, std::string& why) {
    boost::system::error_code ec;
    auto v = boost::json::parse(text, ec);
    if (ec) why = "not valid JSON (" + ec.message() + ")";
    else if (!v.is_object()) why = "not a JSON object";
    else return std::move(v.get_object());
    return std::nullopt;
  }

private:
  std::filesystem::path file_of(std::string_view plugin) const { return dir_ / (std::string(plugin) + ".json"); }

  static error_info failure(std::string_view plugin, std::string message) {
    return {make_error_code(errc::state_store_failed), std::string(plugin), std::move(message)};
  }

  // Temporary file, fsync, rename over the real one, fsync the directory.
  error_info write(std::string_view plugin, const std::string& text) {
    std::error_code ec;
    if (!std::filesystem::is_directory(dir_, ec)) {
      std::filesystem::create_directories(dir_, ec);
      if (!ec) ::chmod(dir_.c_str(), 0700);
    }
    auto file = file_of(plugin);
    auto tmp = dir_ / ("." + std::string(plugin) + ".json.tmp-" + std::to_string(::getpid()));
    auto sys_fail = [&](const char* what) {
      auto message = "cannot store the state of plugin '" + std::string(plugin) + "': " + what + " " +
                     tmp.string() + ": " + std::strerror(errno) + "; check options.state_dir (" + dir_.string() +
                     ") exists and is writable";
      ::unlink(tmp.c_str());
      return failure(plugin, std::move(message));
    };
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return sys_fail("open");
    for (std::size_t done = 0; done < text.size();) {
      ssize_t n = ::write(fd, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::close(fd);
        return sys_fail("write");
      }
      done += static_cast<std::size_t>(n);
    }
    if (::fsync(fd) != 0) {
      ::close(fd);
      return sys_fail("fsync");
    }
    ::close(fd);
    if (::rename(tmp.c_str(), file.c_str()) != 0) return sys_fail("rename");
    int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
      ::fsync(dfd);
      ::close(dfd);
    }
    return {};
  }

  void set_aside(std::string_view plugin, const std::filesystem::path& file, const std::string& why) {
    char stamp[32];
    std::time_t now = std::time(nullptr);
    std::tm tm{};
    ::gmtime_r(&now, &tm);
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    auto aside = file;
    aside += std::string(".corrupt-") + stamp;
    for (int n = 1; std::filesystem::exists(aside); ++n) {
      aside = file;
      aside += std::string(".corrupt-") + stamp + "-" + std::to_string(n);
    }
    std::error_code ec;
    std::filesystem::rename(file, aside, ec);
    log_.log(log_level::error, plugin,
             "State file " + file.string() + " of plugin '" + std::string(plugin) + "' is " + why +
                 (ec ? "; could not move it aside (" + ec.message() + ")" : "; moved it aside to " + aside.string()) +
                 "; the plugin starts with empty state");
  }

  // Temporary files of processes that died while writing.
  void remove_stale_temporaries() {
    std::error_code ec;
    if (dir_.empty() || !std::filesystem::is_directory(dir_, ec)) return;
    for (auto& e : std::filesystem::directory_iterator(dir_, ec)) {
      auto name = e.path().filename().string();
      auto at = name.rfind(".json.tmp-");
      if (name.empty() || name[0] != '.' || at == std::string::npos) continue;
      pid_t pid = static_cast<pid_t>(std::atoi(name.c_str() + at + 10));
      if (pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH) std::filesystem::remove(e.path(), ec);
    }
  }

  std::filesystem::path dir_;
  logger log_;
  json_state memory_;
  std::map<std::string, snapshot_ptr, std::less<>> staged_; // not yet written
};

static_assert(state_store<persistent_json_state> && state_store_sharing<persistent_json_state> &&
              state_store_staging<persistent_json_state> && state_store_accepting<persistent_json_state>);

} // namespace hotreload

#endif
