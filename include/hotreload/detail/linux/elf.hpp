#ifndef HOTRELOAD_DETAIL_LINUX_ELF_HPP
#define HOTRELOAD_DETAIL_LINUX_ELF_HPP

// What the library file itself tells before it is mapped: whether it is whole, and what in it
// will keep it from unloading.

#include <hotreload/detail/result.hpp>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace hotreload::detail {

/// Whether the ELF file `fd` is incomplete (a write in progress, a truncated copy): an
/// errc::load_failed error, or empty when it is whole or not ELF at all (dlopen then says
/// what it is). The section header table and every segment must lie inside the file; a
/// linker writes the former last.
inline error_info elf_truncation(int fd) {
  Elf64_Ehdr h{};
  struct ::stat st{};
  if (::fstat(fd, &st) != 0 || ::pread(fd, &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) return {};
  if (std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0 || h.e_ident[EI_CLASS] != ELFCLASS64) return {};
  auto size = static_cast<std::uint64_t>(st.st_size);
  auto need = h.e_shoff + std::uint64_t(h.e_shnum) * h.e_shentsize;
  if (h.e_phnum > 0 && need <= size) { // the program headers, in one read
    auto span = std::uint64_t(h.e_phnum - 1) * h.e_phentsize + sizeof(Elf64_Phdr);
    std::vector<char> table(h.e_phoff <= size && span <= size - h.e_phoff ? span : 0);
    if (table.empty() ||
        ::pread(fd, table.data(), table.size(), static_cast<off_t>(h.e_phoff)) != static_cast<ssize_t>(table.size()))
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

/// Reads the dynamic symbol table of the ELF file `path` (nothing found if it is not ELF).
inline elf_findings inspect_elf(const std::filesystem::path& path) {
  elf_findings out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  auto read_at = [fd](void* to, std::size_t n, std::uint64_t at) {
    return ::pread(fd, to, n, static_cast<off_t>(at)) == static_cast<ssize_t>(n);
  };
  Elf64_Ehdr h{};
  std::vector<Elf64_Shdr> sections;
  if (read_at(&h, sizeof h, 0) && std::memcmp(h.e_ident, ELFMAG, SELFMAG) == 0 && h.e_ident[EI_CLASS] == ELFCLASS64 &&
      h.e_shentsize == sizeof(Elf64_Shdr) && h.e_shnum < 65535) {
    sections.resize(h.e_shnum);
    if (!read_at(sections.data(), sections.size() * sizeof(Elf64_Shdr), h.e_shoff)) sections.clear();
  }
  for (auto& sec : sections) {
    if (sec.sh_type != SHT_DYNSYM || sec.sh_link >= sections.size() || sec.sh_entsize != sizeof(Elf64_Sym)) continue;
    auto& strtab = sections[sec.sh_link];
    std::vector<Elf64_Sym> syms(sec.sh_size / sizeof(Elf64_Sym));
    std::string names(strtab.sh_size, '\0');
    if (!read_at(syms.data(), syms.size() * sizeof(Elf64_Sym), sec.sh_offset) ||
        !read_at(names.data(), names.size(), strtab.sh_offset))
      break;
    for (auto& sym : syms) {
      if (sym.st_name >= names.size()) continue;
      const char* name = names.c_str() + sym.st_name;
      if (ELF64_ST_BIND(sym.st_info) == STB_GNU_UNIQUE && ++out.unique_count <= 3) out.unique_symbols.emplace_back(name);
      if (sym.st_shndx == SHN_UNDEF &&
          (std::strcmp(name, "__cxa_thread_atexit") == 0 || std::strcmp(name, "__cxa_thread_atexit_impl") == 0))
        out.thread_local_destructors = true;
    }
  }
  ::close(fd);
  return out;
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
  return why + "a thread still running its code; or a dlopen of itself";
}

} // namespace hotreload::detail

#endif
