#ifndef HOTRELOAD_DETAIL_LINUX_TRUST_HPP
#define HOTRELOAD_DETAIL_LINUX_TRUST_HPP

#include <hotreload/detail/result.hpp>
#include <hotreload/options.hpp>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>

namespace hotreload::detail {

/// Whether a file or directory with status `st` fails the owner/permission checks: an
/// errc::untrusted_file error whose message ("it is ...") gives the fix, or empty.
inline error_info trust_problem(const struct ::stat& st, const std::filesystem::path& path, const trust_checks& t,
                                uid_t euid = ::geteuid()) {
  if (t.owner && st.st_uid != euid && st.st_uid != 0)
    return fail(errc::untrusted_file, {},
                "it is owned by uid " + std::to_string(st.st_uid) + ", neither this process's user (uid " +
                    std::to_string(euid) + ") nor root; chown it, or set options.trust.owner = false");
  if (t.permissions && (st.st_mode & (S_IWGRP | S_IWOTH))) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail(errc::untrusted_file, {},
                std::string("it is writable by ") + ((st.st_mode & S_IWOTH) ? "others" : "its group") + " (mode " +
                    mode + "); run chmod go-w " + path.string() + ", or set options.trust.permissions = false");
  }
  return {};
}

/// Checks `file` against options.trust before it is loaded: inside a plugin directory once
/// symlinks are resolved, a regular file, and it and each directory up to its plugin
/// directory owned by us (or root) and not writable by others. Returns the first failure.
inline error_info check_trust(const std::filesystem::path& file, const std::vector<std::filesystem::path>& plugin_dirs,
                              const trust_checks& t) {
  namespace fs = std::filesystem;
  auto refuse = [&](const std::string& why) { return fail(errc::untrusted_file, {}, file.string() + " was refused: " + why); };
  std::error_code ec;
  auto real = fs::canonical(file, ec);
  if (ec) return {}; // gone: the loader reports it
  struct ::stat st{};
  if (::stat(real.c_str(), &st) != 0) return {};
  if (!S_ISREG(st.st_mode)) return refuse("it is not a regular file; plugins must be regular library files");
  // The plugin directory it is in (the deepest one, if they nest).
  fs::path home;
  for (auto& d : plugin_dirs) {
    auto root = fs::canonical(d, ec);
    if (ec) continue;
    auto rel = real.lexically_relative(root);
    if (!rel.empty() && *rel.begin() != ".." && rel != "." &&
        root.native().size() > home.native().size())
      home = root;
  }
  if (home.empty()) {
    if (t.inside_plugin_dirs)
      return refuse((real == file ? std::string("it is outside") : "it resolves to " + real.string() + ", outside") +
                    " every plugin directory; put it in one, or set options.trust.inside_plugin_dirs = false");
  }
  if (auto why = trust_problem(st, real, t)) return refuse(why.message);
  if (home.empty()) return {};
  for (auto dir = real.parent_path();; dir = dir.parent_path()) {
    if (::stat(dir.c_str(), &st) == 0)
      if (auto why = trust_problem(st, dir, t))
        return refuse("its directory " + dir.string() + " " + why.message.substr(3)); // "it is ..." -> "is ..."
    if (dir == home || dir == dir.parent_path()) break;
  }
  return {};
}

} // namespace hotreload::detail

#endif
