#ifndef HOTRELOAD_LOADER_DLL_LOADER_HPP
#define HOTRELOAD_LOADER_DLL_LOADER_HPP

#include <hotreload/config.hpp>
#include <hotreload/detail/linux/elf.hpp>
#include <hotreload/detail/linux/probe.hpp>
#include <hotreload/detail/linux/shadow_copy.hpp>
#include <hotreload/detail/result.hpp>
#include <hotreload/loader/loader.hpp>
#include <hotreload/metadata.hpp>
#include <hotreload/options.hpp>

#include <boost/dll/shared_library.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <dlfcn.h>

namespace hotreload {

/// The default Loader: copies each version to a fresh shadow file (glibc would hand back
/// the already-loaded object for the same path or inode), probes it in a probe worker
/// (options.probe_in_child) and maps it with Boost.DLL, RTLD_NOW | RTLD_LOCAL, so a missing
/// symbol fails here instead of at first call. The reloader calls `async_load`, which waits
/// for the probe without blocking its executor; `load` is the same, blocking.
class dll_loader {
public:
  dll_loader() : dll_loader(options{}) {}
  explicit dll_loader(const options& opts)
      : root_(opts.shadow_dir), trust_(opts.trust), probe_(opts.probe_in_child), probe_timeout_(opts.probe_timeout),
        probe_reuse_(opts.probe_reuse) {
    if (probe_) server_ = detail::probe_server::start(probe_reuse_); // now, while the program is small
  }

  loaded_library load(const std::filesystem::path& source, error_info& err) {
    auto m = stage(source);
    if (m && m.value.answer >= 0) {
      auto within = detail::answer_limit(probe_timeout_);
      auto answer = detail::probe_server::read_result(std::exchange(m.value.answer, -1), within);
      if (answer.kind != detail::probe_result::unanswered && m.value.written()) { // written in place while probed: the probe may have read other bytes
        auto fd = ask_probe(m.value.copy->image, source, m.value.copy->first);
        answer = fd ? detail::probe_server::read_result(fd.value, within) : detail::probe_result{};
      }
      m.error = verdict(answer, source);
    }
    auto lib = m ? map(std::move(m.value.copy)) : detail::result<loaded_library>{{}, m.error};
    err = std::move(lib.error);
    return std::move(lib.value);
  }

  HOTRELOAD_DECL awaitable<std::pair<loaded_library, error_info>> async_load(std::filesystem::path source);

  /// The probe server's process id (0 without one), for tools and tests.
  pid_t probe_pid() const noexcept { return server_ ? server_->pid() : 0; }

private:
  // Owns one copy (from the shadow directory's take_file), mapped or not: unmaps it, then
  // deletes the file, and the link that holds the library file it was copied from (see
  // detail::hold_link), and tells the shadow directory that the copy is gone.
  struct mapping {
    std::filesystem::path source, image, held;
    std::vector<std::string> first; // its dependencies, each loaded by itself before it (see dependencies_first)
    boost::dll::shared_library library;
    std::shared_ptr<detail::shadow_directory> dir;
    ~mapping() {
      library.unload();
      ::unlink(image.c_str());
      if (!held.empty()) detail::remove_later(std::move(held));
      dir->release(source);
    }
  };
  using mapping_ptr = std::shared_ptr<mapping>;

  // A shadow copy being made, and the probe's answer to come (if the probe is on).
  struct staged {
    mapping_ptr copy;
    int source = -1;      // the library file, open
    struct ::stat st {};  // as it was when opened
    int answer = -1;      // where the probe answers; taken by whoever reads it
    staged() = default;
    staged(staged&& o) noexcept
        : copy(std::move(o.copy)), source(std::exchange(o.source, -1)), st(o.st), answer(std::exchange(o.answer, -1)) {}
    staged& operator=(staged&&) = delete;
    ~staged() {
      if (source >= 0) ::close(source);
      if (answer >= 0) ::close(answer);
    }
    // Whether the file was written after it was opened: the probe may have read other bytes.
    bool written() const { return detail::written_since(source, st); }
  };

  // The library opened and checked (regular file, trust); the probe asked to load that very
  // file while it is copied (it reads the open file, so a rename over its path changes
  // nothing); the copy checked (complete ELF). Not mapped yet.
  detail::result<staged> stage(const std::filesystem::path& source) {
    std::error_code ec;
    if (!std::filesystem::exists(source, ec))
      return {{}, refuse(errc::file_not_found, source.string() + " does not exist; check the path or rebuild the plugin")};
    if (!dir_) {
      auto dir = detail::shadow_directory::create(root_);
      if (!dir) return {{}, dir.error};
      dir_ = std::move(dir.value);
    }
    staged s;
    auto cannot = [&](error_info err) {
      err.message = source.string() + " cannot be loaded: " + err.message;
      return detail::result<staged>{{}, std::move(err)};
    };
    auto in = detail::open_library(source, trust_, s.st);
    if (!in) return cannot(std::move(in.error));
    s.source = in.value;
    auto first = detail::dependencies_first(s.source, std::filesystem::absolute(source, ec).parent_path());
    if (probe_) {
      auto fd = ask_probe(s.source, source, first);
      if (!fd) return {{}, fd.error};
      s.answer = fd.value;
    }
    auto file = dir_->take_file(source);
    if (!file) return cannot(std::move(file.error));
    s.copy = std::make_shared<mapping>(); // releases the file taken, whatever happens next
    s.copy->source = source;
    s.copy->image = file.value.path;
    s.copy->dir = dir_;
    if (auto err = detail::copy_open_library(s.source, s.st, file.value)) return cannot(std::move(err));
    s.copy->first = std::move(first);
    if (auto held = s.copy->image.string() + ".source"; detail::hold_link(s.source, held)) s.copy->held = held;
    return {std::move(s)};
  }

  // Sends `library` (a path or an open descriptor) to the probe server (started afresh if the
  // last one is gone); the descriptor its answer will arrive on.
  template <class Library>
  detail::result<int> ask_probe(const Library& library, const std::filesystem::path& source,
                                const std::vector<std::string>& first) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (!server_) server_ = detail::probe_server::start(probe_reuse_);
      if (!server_) break;
      if (int fd = server_->request(library, probe_timeout_, first); fd >= 0) return {fd};
      if (errno == ENAMETOOLONG)
        return {-1, refuse(errc::load_failed, source.string() + " was not loaded: its path and the names and paths of the "
                                                  "libraries it needs take more than " +
                                                  std::to_string(detail::probe_server::request_paths_max) +
                                                  " bytes, too many for a probe request; shorten them, or set "
                                                  "options.probe_in_child = false")};
      server_.reset();
    }
    return {-1, refuse(errc::load_failed, source.string() + " was not loaded: no probe process could be started (" +
                                              std::strerror(errno) +
                                              "); free resources (processes, memory), or set "
                                              "options.probe_in_child = false")};
  }

  error_info verdict(detail::probe_result result, const std::filesystem::path& source) {
    if (result.kind == detail::probe_result::unanswered && server_) server_->kill();
    if (result.kind == detail::probe_result::lost || result.kind == detail::probe_result::unanswered)
      server_.reset(); // start a new one next time
    auto err = detail::probe_verdict(result, probe_timeout_);
    if (err) err.message = source.string() + " was refused: " + err.message;
    return err;
  }

  // Maps the copy here and resolves the three exports.
  detail::result<loaded_library> map(mapping_ptr m) {
    const auto& source = m->source;
    // Its dependencies, each by itself first (see dependencies_first); once it is loaded, its
    // own references hold them. One that cannot load by itself (it needs the plugin's symbols)
    // is left to the plugin's load; if that fails too, why one found by path failed is said
    // (the plugin's own load would not find it: a shadow copy's $ORIGIN is elsewhere).
    struct handles {
      std::vector<void*> at;
      ~handles() {
        for (void* h : at) ::dlclose(h);
      }
    } first;
    std::string failed_first;
    for (auto& lib : m->first) {
      ::dlerror();
      if (void* h = ::dlopen(lib.c_str(), RTLD_NOW | RTLD_LOCAL)) first.at.push_back(h);
      else if (const char* e = ::dlerror(); e && lib.find('/') != std::string::npos)
        failed_first += std::string(" (") + lib + ", which it needs, failed to load: " + e + ")";
    }
    std::error_code ec;
    m->library.load(m->image, ec, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
    if (ec)
      return {{}, refuse(errc::load_failed, source.string() + " is not a loadable library: " + dlopen_error(m->image) +
                                                failed_first + "; rebuild it (a missing symbol means it needs a library or host "
                                                "symbol that is not there)")};
    std::string missing;
    for (const char* symbol : {"hotreload_abi_tag", "hotreload_metadata", "hotreload_create"})
      if (!m->library.has(symbol)) missing += (missing.empty() ? "" : ", ") + std::string(symbol);
    if (!missing.empty())
      return {{}, refuse(errc::not_a_plugin, source.string() + " is a shared library but not a hotreload plugin (it "
                                                 "lacks the export" +
                                                 (missing.find(',') != std::string::npos ? "s " : " ") + missing +
                                                 "); add HOTRELOAD_PLUGIN(your_class, R\"({\"name\": ...})\") to "
                                                 "one of its sources, once")};
    loaded_library lib;
    lib.source = source;
    lib.image = m->image;
    lib.tag = &m->library.get<const abi_tag>("hotreload_abi_tag");
    const char* meta = &m->library.get<const char>("hotreload_metadata");
    lib.metadata = std::string_view(meta, ::strnlen(meta, max_metadata_size + 1));
    lib.create = &m->library.get<detail::create_fn>("hotreload_create");
    lib.handle = std::move(m);
    return {std::move(lib)};
  }

  static error_info refuse(errc code, std::string message) {
    return detail::fail(code, {}, std::move(message));
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
  int probe_reuse_ = 1000;
  std::shared_ptr<detail::probe_server> server_;
  std::shared_ptr<detail::shadow_directory> dir_;
};

static_assert(loader<dll_loader>);

} // namespace hotreload

#ifndef HOTRELOAD_SEPARATE_COMPILATION
#include <hotreload/loader/impl/dll_loader.ipp>
#endif

#endif
