#ifndef HOTRELOAD_DETAIL_LINUX_HOST_EXPORTS_HPP
#define HOTRELOAD_DETAIL_LINUX_HOST_EXPORTS_HPP

// Whether the program that holds the reloader exports its symbols (linked with -rdynamic):
// plugins that call into the host resolve against them, and without it they fail to load
// with "undefined symbol".

#include <dlfcn.h>

/// A symbol of the host's: only hosts use it (host_exports_symbols takes its address).
extern "C" inline __attribute__((visibility("default"))) int hotreload_host_marker() noexcept { return 1; }

namespace hotreload::detail {

/// Looks for the marker among the exported symbols of the object that contains it (the
/// program, or a shared library the reloader lives in). True when it cannot tell.
inline bool host_exports_symbols() {
  auto* self = reinterpret_cast<void*>(&hotreload_host_marker);
  Dl_info info{};
  if (!dladdr(self, &info)) return true;
  void* object = info.dli_fname && *info.dli_fname ? dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD) : nullptr;
  if (!object) object = dlopen(nullptr, RTLD_LAZY); // the program itself
  if (!object) return true;
  bool exported = dlsym(object, "hotreload_host_marker") != nullptr;
  dlclose(object);
  return exported;
}

} // namespace hotreload::detail

#endif
