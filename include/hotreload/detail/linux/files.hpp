#ifndef HOTRELOAD_DETAIL_LINUX_FILES_HPP
#define HOTRELOAD_DETAIL_LINUX_FILES_HPP

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <system_error>

#include <sys/stat.h>

namespace hotreload::detail {

/// What tells one version of a file from the next: device, inode, size and nanosecond
/// mtime. Whole-second mtimes miss two builds in the same second; a rename changes the
/// inode; an in-place rewrite changes size or mtime.
struct file_stamp {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::int64_t size = 0;
  std::int64_t mtime_ns = 0;
  friend bool operator==(const file_stamp&, const file_stamp&) = default;
};

/// The stamp of a regular file, or nothing (missing, or not a regular file).
inline std::optional<file_stamp> stamp_of(const std::filesystem::path& p) {
  struct ::stat st{};
  if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return file_stamp{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                    static_cast<std::int64_t>(st.st_size),
                    static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
}

/// Calls `on_file(path)` for every regular file below `dir`, skipping hidden entries (and
/// hidden directories' contents). Unreadable subdirectories are skipped; the result is the
/// error of opening `dir` itself, if any.
inline std::error_code for_each_file(const std::filesystem::path& dir,
                                     const std::function<void(const std::filesystem::path&)>& on_file) {
  namespace fs = std::filesystem;
  std::error_code ec;
  // The directory itself must be readable (skip_permission_denied would make it look empty);
  // unreadable subdirectories are skipped.
  if (fs::directory_iterator probe(dir, ec); ec) return ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  if (ec) return ec;
  for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) {
      ec.clear();
      continue;
    }
    auto name = it->path().filename().string();
    std::error_code type_ec;
    if (!name.empty() && name[0] == '.') {
      if (it->is_directory(type_ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(type_ec)) on_file(it->path());
  }
  return {};
}

} // namespace hotreload::detail

#endif
