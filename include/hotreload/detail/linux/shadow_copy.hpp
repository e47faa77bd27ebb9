#ifndef HOTRELOAD_DETAIL_LINUX_SHADOW_COPY_HPP
#define HOTRELOAD_DETAIL_LINUX_SHADOW_COPY_HPP

// Shadow copies: each version of a library is mapped from a private copy, made with
// sendfile into a locked per-process directory and checked (regular file, owner,
// permissions, a whole ELF image) on the bytes that will be mapped.

#include <hotreload/detail/background.hpp>
#include <hotreload/detail/linux/elf.hpp>
#include <hotreload/detail/linux/trust.hpp>
#include <hotreload/detail/result.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/file.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

namespace hotreload::detail {

/// A new, empty file for a shadow copy, open read-write; closed with this object.
struct shadow_file {
  std::filesystem::path path;
  int fd = -1;
  shadow_file() = default;
  shadow_file(std::filesystem::path p, int f) : path(std::move(p)), fd(f) {}
  shadow_file(shadow_file&& o) noexcept : path(std::move(o.path)), fd(std::exchange(o.fd, -1)) {}
  shadow_file& operator=(shadow_file&& o) noexcept {
    std::swap(path, o.path);
    std::swap(fd, o.fd);
    return *this;
  }
  ~shadow_file() {
    if (fd >= 0) ::close(fd);
  }
};

/// Creates the file `to` for a shadow copy: mode 0500, O_EXCL (nothing there before).
inline result<shadow_file> create_shadow_file(const std::filesystem::path& to) {
  int out = ::open(to.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0500);
  if (out < 0)
    return {{}, fail(errc::shadow_copy_failed, {}, "cannot create shadow copy " + to.string() + ": " + std::strerror(errno))};
  return {shadow_file(to, out)};
}

/// A loader's private shadow directory `<root>/hotreload-<pid>-<random>`, locked with flock
/// for the process's lifetime, so that the next start can tell a crashed process's leftovers
/// (lock free) from a live sibling's (lock held) and remove only the former.
class shadow_directory : public std::enable_shared_from_this<shadow_directory> {
public:
  static result<std::shared_ptr<shadow_directory>> create(std::filesystem::path root) {
    namespace fs = std::filesystem;
    std::error_code ec;
    bool default_root = root.empty();
    if (default_root) root = fs::temp_directory_path(ec) / ("hotreload-" + std::to_string(::geteuid()));
    fs::create_directories(root, ec);
    if (ec)
      return refuse("cannot create shadow directory " + root.string() + ": " + ec.message() +
                    "; set options.shadow_dir to a writable directory");
    if (default_root) ::chmod(root.c_str(), 0700);
    remove_stale(root);
    std::random_device rd;
    auto dir = root / (std::string(prefix) + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    if (!fs::create_directory(dir, ec) || ec)
      return refuse("cannot create " + dir.string() + ": " + (ec ? ec.message() : "exists"));
    ::chmod(dir.c_str(), 0700);
    int fd = ::open((dir / lock_name).c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (fd >= 0) ::close(fd);
      fs::remove_all(dir, ec);
      return refuse("cannot lock shadow directory " + dir.string() + ": " + std::strerror(errno));
    }
    return {std::shared_ptr<shadow_directory>(new shadow_directory(std::move(dir), fd))};
  }

  ~shadow_directory() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    ::close(lock_fd_);
  }

  const std::filesystem::path& path() const noexcept { return path_; }

  /// A new, empty file for the next copy of `source` (`<stem>.<n><ext>`, see
  /// create_shadow_file), counted as one of that source's copies until release(source).
  /// Creating a file is the slowest step of a copy after the copy itself (ext4 looks for an
  /// inode that was not freed just now, and every reload frees one: 15-25 us here), so each
  /// file taken has the next one for the same source made in the background, off the reload's
  /// path (once the thread wakes for other work, such as unmapping the version replaced:
  /// waking it would cost as much): one spare per source, empty, used only if it still is,
  /// and removed with the source's last copy (a plugin removed, or one whose load failed).
  result<shadow_file> take_file(const std::filesystem::path& source) {
    shadow_file spare;
    {
      std::lock_guard lk(mu_);
      auto& entry = sources_[source.native()];
      ++entry.copies; // this one, released if its file cannot be made
      spare = std::move(entry.spare);
    }
    struct ::stat st{};
    if (spare.fd >= 0 && !(::fstat(spare.fd, &st) == 0 && st.st_size == 0 && st.st_nlink == 1)) {
      ::unlink(spare.path.c_str());
      spare = {};
    }
    auto file = spare.fd >= 0 ? result<shadow_file>{std::move(spare)} : create_shadow_file(next_name(source));
    if (!file) {
      release(source);
      return file;
    }
    in_background([self = weak_from_this(), source] {
      if (auto dir = self.lock()) dir->make_spare(source);
    }, wake::later);
    return file;
  }

  /// One copy of `source` (from take_file) is gone; with the last one, its spare goes too.
  void release(const std::filesystem::path& source) {
    shadow_file spare;
    {
      std::lock_guard lk(mu_);
      auto it = sources_.find(source.native());
      if (it == sources_.end() || --it->second.copies > 0) return;
      spare = std::move(it->second.spare);
      sources_.erase(it);
    }
    if (spare.fd >= 0) ::unlink(spare.path.c_str());
  }

private:
  shadow_directory(std::filesystem::path p, int fd) : path_(std::move(p)), lock_fd_(fd) {}

  std::filesystem::path next_name(const std::filesystem::path& source) {
    return path_ / (source.stem().string() + "." + std::to_string(++sequence_) + source.extension().string());
  }

  // Makes the spare of `source`, unless it has one, or no copy any more.
  void make_spare(const std::filesystem::path& source) {
    auto wanted = [&] {
      auto it = sources_.find(source.native());
      return it != sources_.end() && it->second.copies > 0 && it->second.spare.fd < 0;
    };
    {
      std::lock_guard lk(mu_);
      if (!wanted()) return;
    }
    auto file = create_shadow_file(next_name(source));
    if (!file) return; // the next copy makes its file itself, and says why it cannot
    std::lock_guard lk(mu_);
    if (wanted()) sources_[source.native()].spare = std::move(file.value);
    else ::unlink(file.value.path.c_str()); // its last copy went meanwhile
  }

  static result<std::shared_ptr<shadow_directory>> refuse(std::string message) {
    return {nullptr, fail(errc::shadow_copy_failed, {}, std::move(message))};
  }

  static void remove_stale(const std::filesystem::path& root) {
    namespace fs = std::filesystem;
    std::error_code ec;
    for (auto& e : fs::directory_iterator(root, ec)) {
      if (!e.path().filename().string().starts_with(prefix) || !e.is_directory(ec)) continue;
      int fd = ::open((e.path() / lock_name).c_str(), O_RDWR | O_CLOEXEC);
      if (fd < 0) continue; // being created right now, or not ours
      bool stale = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
      if (stale) fs::remove_all(e.path(), ec);
      ::close(fd);
    }
  }

  static constexpr const char* prefix = "hotreload-";
  static constexpr const char* lock_name = ".lock";

  std::filesystem::path path_;
  int lock_fd_;
  std::atomic<unsigned long> sequence_{0};
  struct source_files {
    int copies = 0;    // taken and not released
    shadow_file spare; // made ahead for the next copy (or none yet)
  };
  std::mutex mu_; // sources_: taken and released anywhere, spares made in the background
  std::map<std::string, source_files> sources_;
};

/// Opens `from` to be loaded: a regular file that passes the trust checks (on the very file
/// opened); its descriptor and `st`. On failure the error says why: untrusted_file (not a
/// regular file, or it fails the owner/permission checks), else shadow_copy_failed.
inline result<int> open_library(const std::filesystem::path& from, const trust_checks& trust, struct ::stat& st) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK); // a FIFO must not block us
  if (in < 0) return {-1, fail(errc::shadow_copy_failed, {}, std::string("cannot open: ") + std::strerror(errno))};
  error_info why;
  if (::fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) why = fail(errc::untrusted_file, {}, "it is not a regular file");
  else why = trust_problem(st, from, trust);
  if (why) {
    ::close(in);
    return {-1, std::move(why)};
  }
  return {in};
}

/// Copies the open library `in` (of size `st.st_size`), from its start, into the empty file
/// `to` (create_shadow_file). On failure the error says why, with its code: load_failed (an
/// incomplete ELF image), else shadow_copy_failed; and `to` is removed.
inline error_info copy_open_library(int in, const struct ::stat& st, const shadow_file& to) {
  const int out = to.fd;
  error_info error;
  off_t offset = 0;
  while (offset < st.st_size) {
    ssize_t n = ::sendfile(out, in, &offset, static_cast<size_t>(st.st_size - offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = fail(errc::shadow_copy_failed, {},
                   n < 0 ? std::string("copy failed: ") + std::strerror(errno) : "file shrank while copying");
      break;
    }
  }
  // Checked on the copy: the bytes that will be mapped, whatever the writer does meanwhile.
  if (!error) error = elf_truncation(out);
  if (error) ::unlink(to.path.c_str());
  return error;
}

/// Copies `from` to a new file `to`: open_library, create_shadow_file, copy_open_library.
inline error_info copy_file_private(const std::filesystem::path& from, const std::filesystem::path& to,
                                    const trust_checks& trust = {}) {
  struct ::stat st{};
  auto in = open_library(from, trust, st);
  if (!in) return in.error;
  auto out = create_shadow_file(to);
  auto error = out ? copy_open_library(in.value, st, out.value) : out.error;
  ::close(in.value);
  return error;
}

/// Whether the open file `fd` was written since `before` was taken: its size or modification
/// time differ (every write sets it; to the nanosecond once it has been looked at, on kernels
/// with multigrain timestamps). Not its change time: a rename over its path changes that too.
inline bool written_since(int fd, const struct ::stat& before) {
  struct ::stat now{};
  if (::fstat(fd, &now) != 0) return true;
  return now.st_size != before.st_size || now.st_mtim.tv_sec != before.st_mtim.tv_sec ||
         now.st_mtim.tv_nsec != before.st_mtim.tv_nsec;
}

/// Gives the open file `fd` a second name `link` (a hard link, through /proc/self/fd, so it
/// is the file that was opened and checked, whatever its path names now). The loader links
/// each served library into its shadow directory: a build's rename over the library then
/// only drops a name (70 us on ext4 here) instead of freeing the replaced file's blocks
/// (230 us at p50, up to 5 ms at p99, for a 228 KB library, all before the watcher hears of
/// it); remove_later frees them once its version is gone. A link, not a held descriptor: an
/// open file would keep its directory alive after `rm -r` (no IN_DELETE_SELF for watchers)
/// and its file system busy. False where the file system refuses (another file system
/// than the shadow directory's, protected_hardlinks): nothing is held then.
inline bool hold_link(int fd, const std::filesystem::path& link) {
  auto self = "/proc/self/fd/" + std::to_string(fd);
  return ::linkat(AT_FDCWD, self.c_str(), AT_FDCWD, link.c_str(), AT_SYMLINK_FOLLOW) == 0;
}

/// Removes `link` (from hold_link): here if the file has another name still (that costs
/// nothing), else in the background, since the last name's removal frees the file's blocks,
/// which belongs on no thread of the program's.
inline void remove_later(std::filesystem::path link) {
  struct ::stat st{};
  if (::lstat(link.c_str(), &st) != 0 || st.st_nlink > 1) {
    ::unlink(link.c_str());
    return;
  }
  in_background([link = std::move(link)] { ::unlink(link.c_str()); });
}

} // namespace hotreload::detail

#endif
