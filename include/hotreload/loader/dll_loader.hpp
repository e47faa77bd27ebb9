#ifndef HOTRELOAD_LOADER_DLL_LOADER_HPP
#define HOTRELOAD_LOADER_DLL_LOADER_HPP

#include <hotreload/config.hpp>
#include <hotreload/detail/probe.hpp>
#include <hotreload/detail/trust.hpp>
#include <hotreload/loader/loader.hpp>
#include <hotreload/metadata.hpp>
#include <hotreload/options.hpp>

#include <boost/dll/shared_library.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>
#include <system_error>

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

namespace hotreload {

namespace detail {

/// A loader's private shadow directory `<root>/hotreload-<pid>-<random>`, locked with flock
/// for the process's lifetime, so that the next start can tell a crashed process's leftovers
/// (lock free) from a live sibling's (lock held) and remove only the former.
class shadow_directory {
public:
  static std::shared_ptr<shadow_directory> create(std::filesystem::path root, error_info& err) {
    namespace fs = std::filesystem;
    std::error_code ec;
    bool default_root = root.empty();
    if (default_root) root = fs::temp_directory_path(ec) / ("hotreload-" + std::to_string(::geteuid()));
    fs::create_directories(root, ec);
    if (ec) return fail(err, "cannot create shadow directory " + root.string() + ": " + ec.message() +
                                 "; set options.shadow_dir to a writable directory");
    if (default_root) ::chmod(root.c_str(), 0700);
    remove_stale(root);
    std::random_device rd;
    auto dir = root / (std::string(prefix) + std::to_string(::getpid()) + "-" + std::to_string(rd()));
    if (!fs::create_directory(dir, ec) || ec)
      return fail(err, "cannot create " + dir.string() + ": " + (ec ? ec.message() : "exists"));
    ::chmod(dir.c_str(), 0700);
    int fd = ::open((dir / lock_name).c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      if (fd >= 0) ::close(fd);
      fs::remove_all(dir, ec);
      return fail(err, "cannot lock shadow directory " + dir.string() + ": " + std::strerror(errno));
    }
    return std::shared_ptr<shadow_directory>(new shadow_directory(std::move(dir), fd));
  }

  ~shadow_directory() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    ::close(lock_fd_);
  }

  const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path next_name(const std::filesystem::path& source) {
    return path_ / (source.stem().string() + "." + std::to_string(++sequence_) + source.extension().string());
  }

private:
  shadow_directory(std::filesystem::path p, int fd) : path_(std::move(p)), lock_fd_(fd) {}

  static std::shared_ptr<shadow_directory> fail(error_info& err, std::string message) {
    err = {make_error_code(errc::shadow_copy_failed), {}, std::move(message)};
    return nullptr;
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
};

/// Why the ELF file `fd` is incomplete (a write in progress, a truncated copy), or "" when
/// it is whole or not ELF at all (dlopen then says what it is). The section header table
/// and every segment must lie inside the file; a linker writes the former last.
inline std::string elf_truncation(int fd) {
  Elf64_Ehdr h{};
  struct ::stat st{};
  if (::fstat(fd, &st) != 0 || ::pread(fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) return {};
  if (std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0 || h.e_ident[EI_CLASS] != ELFCLASS64) return {};
  auto size = static_cast<std::uint64_t>(st.st_size);
  auto need = h.e_shoff + std::uint64_t(h.e_shnum) * h.e_shentsize;
  for (unsigned i = 0; i < h.e_phnum && need <= size; ++i) {
    Elf64_Phdr ph{};
    auto at = static_cast<off_t>(h.e_phoff + std::uint64_t(i) * h.e_phentsize);
    if (::pread(fd, &ph, sizeof ph, at) != static_cast<ssize_t>(sizeof ph))
      return "it is truncated (its program headers are cut off; still being written?)";
    need = std::max<std::uint64_t>(need, ph.p_offset + ph.p_filesz);
  }
  if (need <= size) return {};
  return "it is truncated (" + std::to_string(size) + " of at least " + std::to_string(need) +
         " bytes; still being written?)";
}

/// Copies `from` to a new file `to` (mode 0500, O_EXCL). Returns why it failed, or "".
/// An incomplete ELF file fails with a message starting "it is truncated"; a file that
/// fails the owner/permission checks (on the very file copied) with "it is owned" or "it
/// is writable".
inline std::string copy_file_private(const std::filesystem::path& from, const std::filesystem::path& to,
                                     const trust_checks& trust = {}) {
  int in = ::open(from.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK); // a FIFO must not block us
  if (in < 0) return std::string("cannot open: ") + std::strerror(errno);
  struct ::stat st{};
  if (::fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(in);
    return "it is not a regular file";
  }
  if (auto why = trust_problem(st, from, trust); !why.empty()) {
    ::close(in);
    return why;
  }
  int out = ::open(to.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0500);
  if (out < 0) {
    int e = errno;
    ::close(in);
    return std::string("cannot create shadow copy ") + to.string() + ": " + std::strerror(e);
  }
  std::string error;
  off_t offset = 0;
  while (offset < st.st_size) {
    ssize_t n = ::sendfile(out, in, &offset, static_cast<size_t>(st.st_size - offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = n < 0 ? std::string("copy failed: ") + std::strerror(errno) : "file shrank while copying";
      break;
    }
  }
  // Checked on the copy: the bytes that will be mapped, whatever the writer does meanwhile.
  if (error.empty()) error = elf_truncation(out);
  ::close(in);
  ::close(out);
  if (!error.empty()) ::unlink(to.c_str());
  return error;
}

} // namespace detail

/// The default Loader: copies each version to a fresh shadow file (glibc would hand back
/// the already-loaded object for the same path or inode), probes it in a child process
/// (options.probe_in_child) and maps it with Boost.DLL, RTLD_NOW | RTLD_LOCAL, so a missing
/// symbol fails here instead of at first call. The reloader calls `async_load`, which waits
/// for the probe without blocking its executor; `load` is the same, blocking.
class dll_loader {
public:
  dll_loader() : dll_loader(options{}) {}
  explicit dll_loader(const options& opts)
      : root_(opts.shadow_dir), trust_(opts.trust), probe_(opts.probe_in_child), probe_timeout_(opts.probe_timeout) {
    if (probe_) server_ = detail::probe_server::start(); // now, while the program is small
  }

  loaded_library load(const std::filesystem::path& source, error_info& err) {
    auto m = stage(source, err);
    if (!m) return {};
    if (probe_) {
      int fd = ask_probe(*m, err);
      if (fd < 0 || !accept(detail::probe_server::read_result(fd), source, err)) return {};
    }
    return map(std::move(m), err);
  }

  awaitable<std::pair<loaded_library, error_info>> async_load(std::filesystem::path source) {
    error_info err;
    auto m = stage(source, err);
    if (m && probe_) {
      int fd = ask_probe(*m, err);
      if (fd >= 0) {
        auto result = co_await detail::probe_server::async_read_result(fd);
        accept(result, source, err);
      }
    }
    loaded_library lib;
    if (!err) lib = map(std::move(m), err);
    co_return std::pair<loaded_library, error_info>(std::move(lib), std::move(err));
  }

  /// The probe server's process id (0 without one), for tools and tests.
  pid_t probe_pid() const noexcept { return server_ ? server_->pid() : 0; }

private:
  // Owns one mapped copy: unmaps it, then deletes the file.
  struct mapping {
    std::filesystem::path source, image;
    boost::dll::shared_library library;
    std::shared_ptr<detail::shadow_directory> dir;
    ~mapping() {
      library.unload();
      ::unlink(image.c_str());
    }
  };

  // The shadow copy of `source`, checked (trust, completeness), not mapped yet.
  std::shared_ptr<mapping> stage(const std::filesystem::path& source, error_info& err) {
    std::error_code ec;
    if (!std::filesystem::exists(source, ec))
      return fail(err, errc::file_not_found,
                  source.string() + " does not exist; check the path or rebuild the plugin");
    if (!dir_ && !(dir_ = detail::shadow_directory::create(root_, err))) return nullptr;
    auto image = dir_->next_name(source);
    if (auto why = detail::copy_file_private(source, image, trust_); !why.empty())
      return fail(err,
                  why.starts_with("it is truncated")                                     ? errc::load_failed
                  : why.starts_with("it is owned") || why.starts_with("it is writable") ||
                          why.starts_with("it is not a regular")                          ? errc::untrusted_file
                                                                                          : errc::shadow_copy_failed,
                  source.string() + " cannot be loaded: " + why);
    auto m = std::make_shared<mapping>();
    m->source = source;
    m->image = std::move(image);
    m->dir = dir_;
    return m;
  }

  // Sends the copy to the probe server (started afresh if the last one is gone); returns
  // the descriptor its answer will arrive on, or -1 with `err` set.
  int ask_probe(const mapping& m, error_info& err) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!server_) server_ = detail::probe_server::start();
      if (!server_) break;
      if (int fd = server_->request(m.image, probe_timeout_); fd >= 0) return fd;
      server_.reset();
    }
    fail(err, errc::load_failed,
         m.source.string() + " was not loaded: no probe process could be started (" + std::strerror(errno) +
             "); free resources (processes, memory), or set options.probe_in_child = false");
    return -1;
  }

  bool accept(detail::probe_result result, const std::filesystem::path& source, error_info& err) {
    if (result.kind == detail::probe_result::lost) server_.reset(); // start a new one next time
    auto why = detail::probe_verdict(result, probe_timeout_);
    if (!why.empty()) fail(err, errc::load_failed, source.string() + " was refused: " + why);
    return why.empty();
  }

  // Maps the copy here and resolves the three exports.
  loaded_library map(std::shared_ptr<mapping> m, error_info& err) {
    const auto& source = m->source;
    std::error_code ec;
    m->library.load(m->image, ec, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    if (ec)
      return fail(err, errc::load_failed,
                  source.string() + " is not a loadable library: " + dlopen_error(m->image) +
                      "; rebuild it (a missing symbol means it needs a library or host symbol that is not there)");
    std::string missing;
    for (const char* symbol : {"hotreload_abi_tag", "hotreload_metadata", "hotreload_create"})
      if (!m->library.has(symbol)) missing += (missing.empty() ? "" : ", ") + std::string(symbol);
    if (!missing.empty())
      return fail(err, errc::not_a_plugin,
                  source.string() + " is a shared library but not a hotreload plugin (it lacks the export" +
                      (missing.find(',') != std::string::npos ? "s " : " ") + missing +
                      "); add HOTRELOAD_PLUGIN(your_class, R\"({\"name\": ...})\") to one of its sources, once");
    loaded_library lib;
    lib.source = source;
    lib.image = m->image;
    lib.tag = &m->library.get<const abi_tag>("hotreload_abi_tag");
    const char* meta = &m->library.get<const char>("hotreload_metadata");
    lib.metadata = std::string_view(meta, ::strnlen(meta, max_metadata_size + 1));
    lib.create = &m->library.get<detail::create_fn>("hotreload_create");
    lib.handle = std::move(m);
    return lib;
  }

  // An empty result (whatever the caller returns) with `err` filled.
  struct failure {
    template <class T>
    operator T() const { return T{}; }
  };
  static failure fail(error_info& err, errc code, std::string message) {
    err = {make_error_code(code), {}, std::move(message)};
    return {};
  }

  // Boost.DLL reports a failed load as a bare error code and clears dlerror(); the cause
  // ("invalid ELF header", "undefined symbol: x") is what a user needs, so ask once more.
  static std::string dlopen_error(const std::filesystem::path& image) {
    ::dlerror();
    if (void* h = ::dlopen(image.c_str(), RTLD_NOW | RTLD_LOCAL)) {
      ::dlclose(h);
      return "dlopen failed";
    }
    const char* e = ::dlerror();
    std::string why = e ? e : "dlopen failed";
    // dlerror repeats the (shadow) path; the source path is already in the message.
    if (auto pos = why.find(image.string() + ": "); pos != std::string::npos)
      why.erase(pos, image.string().size() + 2);
    return why;
  }

  std::filesystem::path root_;
  trust_checks trust_{};
  bool probe_ = true;
  std::chrono::milliseconds probe_timeout_{10'000};
  std::shared_ptr<detail::probe_server> server_;
  std::shared_ptr<detail::shadow_directory> dir_;
};

static_assert(loader<dll_loader>);

} // namespace hotreload

#endif
