#ifndef HOTRELOAD_DETAIL_LINUX_ELF_HPP
#define HOTRELOAD_DETAIL_LINUX_ELF_HPP

// What the library file itself tells before it is mapped: whether it is whole, and what in it
// will keep it from unloading.

#include <hotreload/detail/result.hpp>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <dlfcn.h>
#include <elf.h>
#include <link.h>
#include <fcntl.h>
#include <sys/auxv.h>
#include <sys/stat.h>
#include <unistd.h>

namespace hotreload::detail {

/// Whether `n` bytes at `at` of the file `fd` were read into `to`.
inline bool read_exactly(int fd, void* to, std::size_t n, std::uint64_t at) noexcept {
  return ::pread(fd, to, n, static_cast<off_t>(at)) == static_cast<ssize_t>(n);
}

/// Whether the ELF file `fd` is incomplete (a write in progress, a truncated copy): an
/// errc::load_failed error, or empty when it is whole or not ELF at all (dlopen then says
/// what it is). The section header table and every segment must lie inside the file; a
/// linker writes the former last.
inline error_info elf_truncation(int fd) {
  Elf64_Ehdr h{};
  struct ::stat st{};
  if (::fstat(fd, &st) != 0 || !read_exactly(fd, &h, sizeof h, 0)) return {};
  if (std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0 || h.e_ident[EI_CLASS] != ELFCLASS64) return {};
  auto size = static_cast<std::uint64_t>(st.st_size);
  auto need = h.e_shoff + std::uint64_t(h.e_shnum) * h.e_shentsize;
  if (h.e_phnum > 0 && need <= size) { // the program headers, in one read
    auto span = std::uint64_t(h.e_phnum - 1) * h.e_phentsize + sizeof(Elf64_Phdr);
    std::vector<char> table(h.e_phoff <= size && span <= size - h.e_phoff ? span : 0);
    if (table.empty() || !read_exactly(fd, table.data(), table.size(), h.e_phoff))
      return fail(errc::load_failed, {}, "it is truncated (its program headers are cut off; still being written?)");
    for (unsigned i = 0; i < h.e_phnum; ++i) {
      Elf64_Phdr ph{};
      std::memcpy(&ph, table.data() + std::uint64_t(i) * h.e_phentsize, sizeof ph);
      need = std::max<std::uint64_t>(need, ph.p_offset + ph.p_filesz);
    }
  }
  if (need <= size) return {};
  return fail(errc::load_failed, {},
              "it is truncated (" + std::to_string(size) + " of at least " + std::to_string(need) +
                  " bytes; still being written?)");
}

/// LD_LIBRARY_PATH as the dynamic linker read it, at the process's start (a later setenv does
/// not change its search), and not at all in a secure (setuid) process; empty if unset.
inline const std::string& startup_library_path() {
  static const std::string value = [] {
    std::string env, out;
    if (::getauxval(AT_SECURE)) return out;
    int fd = ::open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return out;
    char buf[4096];
    for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR);)
      if (n > 0) env.append(buf, static_cast<std::size_t>(n));
    ::close(fd);
    for (std::size_t at = 0; at < env.size();) {
      auto end = std::min(env.find('\0', at), env.size());
      if (env.compare(at, 16, "LD_LIBRARY_PATH=") == 0) out = env.substr(at + 16, end - at - 16);
      at = end + 1;
    }
    return out;
  }();
  return value;
}

/// What to load, each by itself, before the library open as `fd`: its direct dependencies
/// (DT_NEEDED), each by the path its run path (DT_RUNPATH, else DT_RPATH) finds it at, with
/// `$ORIGIN` the directory `origin` (that of the path the library is known by), else by name.
///
/// Loaded in one group with the library, a C++ dependency built by g++ (its inline statics,
/// Boost's among them, are STB_GNU_UNIQUE symbols, which keep it loaded for good) binds the
/// statics it shares with the library to the library's copies, and so holds the library
/// mapped for good too (a plugin linking libboost_json in a program without it: pinned at
/// every release). Loaded by itself first, it binds them to its own. And the program maps a
/// shadow copy, a probe worker /proc/self/fd/N, so the dynamic linker would take `$ORIGIN`
/// for the copy's directory and not find what lies beside the library.
/// A name the run path does not find (or LD_LIBRARY_PATH finds first, before a DT_RUNPATH)
/// is loaded by name: the same search, but for the library's run path. A path whose name is
/// already loaded from another file is given by name: the dynamic linker would use that one.
inline std::vector<std::string> dependencies_first(int fd, const std::filesystem::path& origin) {
  // Three reads: the headers, the dynamic section, the strings it names (close together).
  char head[4096];
  const ssize_t got = ::pread(fd, head, sizeof head, 0);
  Elf64_Ehdr h{};
  if (got < static_cast<ssize_t>(sizeof h)) return {};
  std::memcpy(&h, head, sizeof h);
  if (std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0 || h.e_ident[EI_CLASS] != ELFCLASS64 ||
      h.e_phentsize != sizeof(Elf64_Phdr) || h.e_phoff + std::uint64_t(h.e_phnum) * sizeof(Elf64_Phdr) > std::uint64_t(got))
    return {};
  std::vector<Elf64_Phdr> segments(h.e_phnum);
  std::memcpy(segments.data(), head + h.e_phoff, segments.size() * sizeof(Elf64_Phdr));
  auto dyn = std::find_if(segments.begin(), segments.end(), [](auto& p) { return p.p_type == PT_DYNAMIC; });
  if (dyn == segments.end() || dyn->p_filesz > (1u << 20)) return {};
  std::vector<Elf64_Dyn> entries(dyn->p_filesz / sizeof(Elf64_Dyn));
  if (!read_exactly(fd, entries.data(), entries.size() * sizeof(Elf64_Dyn), dyn->p_offset)) return {};
  std::uint64_t strtab = 0, strsz = 0, lo = UINT64_MAX, hi = 0;
  for (auto& e : entries) {
    if (e.d_tag == DT_NULL) break;
    if (e.d_tag == DT_STRTAB) strtab = e.d_un.d_ptr;
    if (e.d_tag == DT_STRSZ) strsz = e.d_un.d_val;
    if (e.d_tag == DT_NEEDED || e.d_tag == DT_RUNPATH || e.d_tag == DT_RPATH) {
      lo = std::min<std::uint64_t>(lo, e.d_un.d_val);
      hi = std::max<std::uint64_t>(hi, e.d_un.d_val);
    }
  }
  // The string table's file offset: the loadable segment that holds its address.
  auto load = std::find_if(segments.begin(), segments.end(), [&](auto& p) {
    return p.p_type == PT_LOAD && p.p_vaddr <= strtab && strtab - p.p_vaddr < p.p_filesz;
  });
  if (load == segments.end() || lo > hi || hi >= strsz) return {};
  std::string strings(std::min<std::uint64_t>(hi + PATH_MAX, strsz) - lo, '\0');
  if (strings.size() > (1u << 20) || !read_exactly(fd, strings.data(), strings.size(), strtab - load->p_vaddr + load->p_offset + lo))
    return {};
  auto string_at = [&](std::uint64_t off) {
    auto s = std::string_view(strings).substr(off - lo);
    return std::string(s.substr(0, s.find('\0')));
  };
  std::vector<std::string> needed;
  std::string runpath, rpath;
  for (auto& e : entries) {
    if (e.d_tag == DT_NULL) break;
    if (e.d_tag == DT_NEEDED) needed.push_back(string_at(e.d_un.d_val));
    if (e.d_tag == DT_RUNPATH) runpath = string_at(e.d_un.d_val);
    if (e.d_tag == DT_RPATH) rpath = string_at(e.d_un.d_val);
  }
  // The directories in the dynamic linker's order, and whether each is the library's own.
  std::vector<std::pair<std::string, bool>> dirs;
  auto add = [&](const std::string& paths, bool own) {
    for (std::size_t at = 0; at <= paths.size();) {
      auto end = std::min(paths.find(':', at), paths.size());
      std::string dir = paths.substr(at, end - at);
      at = end + 1;
      for (const char* token : {"${ORIGIN}", "$ORIGIN"})
        for (std::size_t pos; own && (pos = dir.find(token)) != std::string::npos;)
          dir.replace(pos, std::strlen(token), origin.string());
      if (dir.empty()) dir = "."; // as the dynamic linker reads it
      if (dir.find('$') == std::string::npos) dirs.emplace_back(std::move(dir), own);
    }
  };
  if (!runpath.empty()) {
    if (auto& env = startup_library_path(); !env.empty()) add(env, false);
    add(runpath, true);
  } else if (!rpath.empty()) {
    add(rpath, true);
  }
  std::vector<std::string> out;
  for (auto& name : needed) {
    if (name.empty()) continue;
    std::string path = name;
    for (auto& [dir, own] : dirs) {
      if (name.find('/') != std::string::npos) break; // a path: the dynamic linker takes it as it is
      if (::access((dir + "/" + name).c_str(), F_OK) != 0) continue;
      if (own) path = dir + "/" + name;
      break;
    }
    if (path != name)
      if (void* there = ::dlopen(name.c_str(), RTLD_LAZY | RTLD_NOLOAD)) {
        link_map* l = nullptr;
        if (::dlinfo(there, RTLD_DI_LINKMAP, &l) == 0 && l && l->l_name && path != l->l_name) path = name;
        ::dlclose(there);
      }
    out.push_back(std::move(path));
  }
  return out;
}

/// What a library's dynamic symbols say about its unloading.
struct elf_findings {
  /// STB_GNU_UNIQUE symbols (a few names): built without -fno-gnu-unique, so dlclose is a
  /// no-op and new versions bind to this one's statics.
  std::vector<std::string> unique_symbols;
  std::size_t unique_count = 0;
  /// It imports __cxa_thread_atexit (libstdc++) or __cxa_thread_atexit_impl (glibc):
  /// thread_local objects with destructors, which pin the library while a thread that
  /// touched them lives.
  bool thread_local_destructors = false;
};

/// Adds what the dynamic symbols `syms` (`count` of them, named in the `size` bytes at
/// `names`) say to `out`.
inline void scan_symbols(const Elf64_Sym* syms, std::size_t count, const char* names, std::size_t size,
                         elf_findings& out) {
  for (std::size_t i = 0; i < count; ++i) {
    const auto& sym = syms[i];
    if (sym.st_name >= size) continue;
    const char* name = names + sym.st_name;
    if (::strnlen(name, size - sym.st_name) == size - sym.st_name) continue; // not terminated inside the table
    if (ELF64_ST_BIND(sym.st_info) == STB_GNU_UNIQUE && ++out.unique_count <= 3) out.unique_symbols.emplace_back(name);
    if (sym.st_shndx == SHN_UNDEF &&
        (std::strcmp(name, "__cxa_thread_atexit") == 0 || std::strcmp(name, "__cxa_thread_atexit_impl") == 0))
      out.thread_local_destructors = true;
  }
}

/// Reads the dynamic symbol table of the ELF file `path` (nothing found if it is not ELF).
inline elf_findings inspect_elf(const std::filesystem::path& path) {
  elf_findings out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  Elf64_Ehdr h{};
  std::vector<Elf64_Shdr> sections;
  if (read_exactly(fd, &h, sizeof h, 0) && std::memcmp(h.e_ident, ELFMAG, SELFMAG) == 0 && h.e_ident[EI_CLASS] == ELFCLASS64 &&
      h.e_shentsize == sizeof(Elf64_Shdr) && h.e_shnum < 65535) {
    sections.resize(h.e_shnum);
    if (!read_exactly(fd, sections.data(), sections.size() * sizeof(Elf64_Shdr), h.e_shoff)) sections.clear();
  }
  for (auto& sec : sections) {
    if (sec.sh_type != SHT_DYNSYM || sec.sh_link >= sections.size() || sec.sh_entsize != sizeof(Elf64_Sym)) continue;
    auto& strtab = sections[sec.sh_link];
    std::vector<Elf64_Sym> syms(sec.sh_size / sizeof(Elf64_Sym));
    std::string names(strtab.sh_size, '\0');
    if (!read_exactly(fd, syms.data(), syms.size() * sizeof(Elf64_Sym), sec.sh_offset) ||
        !read_exactly(fd, names.data(), names.size(), strtab.sh_offset))
      break;
    scan_symbols(syms.data(), syms.size(), names.data(), names.size(), out);
  }
  ::close(fd);
  return out;
}

/// What inspect_elf finds, read where the dynamic linker mapped the library `lm`'s dynamic
/// symbols (and has just read them): no file opened, nothing copied (2-3 us against 13-17 us
/// for the file, on the reload's path). Nothing if it has no hash table to count them by.
inline std::optional<elf_findings> inspect_mapped(const link_map& lm) {
  // glibc relocates these entries in place on x86-64; one below the load address is an
  // offset still.
  auto at = [&](const ElfW(Dyn)& d) {
    auto p = static_cast<std::uintptr_t>(d.d_un.d_ptr);
    return p < lm.l_addr ? p + lm.l_addr : p;
  };
  const Elf64_Sym* syms = nullptr;
  const char* names = nullptr;
  std::size_t size = 0;
  const std::uint32_t *gnu = nullptr, *sysv = nullptr;
  for (const ElfW(Dyn)* d = lm.l_ld; d && d->d_tag != DT_NULL; ++d) {
    if (d->d_tag == DT_SYMTAB) syms = reinterpret_cast<const Elf64_Sym*>(at(*d));
    else if (d->d_tag == DT_STRTAB) names = reinterpret_cast<const char*>(at(*d));
    else if (d->d_tag == DT_STRSZ) size = d->d_un.d_val;
    else if (d->d_tag == DT_GNU_HASH) gnu = reinterpret_cast<const std::uint32_t*>(at(*d));
    else if (d->d_tag == DT_HASH) sysv = reinterpret_cast<const std::uint32_t*>(at(*d));
  }
  // How many symbols: DT_HASH says (nchain); in DT_GNU_HASH, the chain of the highest bucket
  // start ends at the last symbol (those below `first` are not hashed: undefined ones).
  std::size_t count = 0;
  if (sysv) {
    count = sysv[1];
  } else if (gnu) {
    const std::uint32_t nbuckets = gnu[0], first = gnu[1], bloom_words = gnu[2];
    auto* buckets = reinterpret_cast<const std::uint32_t*>(reinterpret_cast<const std::uint64_t*>(gnu + 4) + bloom_words);
    const std::uint32_t* chain = buckets + nbuckets; // chain[i - first]: symbol i's
    std::uint32_t last = 0;
    for (std::uint32_t b = 0; b < nbuckets; ++b) last = std::max(last, buckets[b]);
    count = first;
    if (last >= first) {
      while (!(chain[last - first] & 1)) ++last;
      count = last + std::size_t(1);
    }
  }
  if (!syms || !names || !size || !count) return std::nullopt;
  elf_findings out;
  scan_symbols(syms, count, names, size, out);
  return out;
}

/// inspect_elf for the library mapped from `image`, `inside` any address in it: inspect_mapped,
/// or the file read if that cannot tell or `inside` is not in a library mapped from `image`
/// (a Loader of the program's own may hand out other addresses).
inline elf_findings inspect_loaded(const std::filesystem::path& image, const void* inside) {
  Dl_info info{};
  link_map* lm = nullptr;
  if (inside && ::dladdr1(inside, &info, reinterpret_cast<void**>(&lm), RTLD_DL_LINKMAP) && lm && lm->l_name &&
      image == lm->l_name)
    if (auto found = inspect_mapped(*lm)) return std::move(*found);
  return inspect_elf(image);
}

/// Whether a library loaded from `image` is still mapped in this process (after its last
/// handle was closed: then something pins it).
inline bool still_loaded(const std::filesystem::path& image) {
  void* h = ::dlopen(image.c_str(), RTLD_LAZY | RTLD_NOLOAD);
  if (h) ::dlclose(h);
  return h != nullptr;
}

/// Why a version with these findings may stay mapped, for the log.
inline std::string pin_causes(const elf_findings& f) {
  std::string why;
  if (f.unique_count)
    why += std::to_string(f.unique_count) + " STB_GNU_UNIQUE symbol(s), e.g. " + f.unique_symbols.front() +
           " (build it with -fno-gnu-unique: the hotreload-plugin dependency adds it); ";
  if (f.thread_local_destructors)
    why += "thread_local objects with destructors touched on threads that still run (they pin it until those "
           "threads end; keep such state in the plugin object instead); ";
  return why + "a thread still running its code; a C++ library it links that could not be loaded by itself first (it "
               "needs the plugin's symbols: link it against what it needs); or a dlopen of itself";
}

} // namespace hotreload::detail

#endif
