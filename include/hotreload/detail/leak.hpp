#ifndef HOTRELOAD_DETAIL_LEAK_HPP
#define HOTRELOAD_DETAIL_LEAK_HPP

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOTRELOAD_HAS_LSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define HOTRELOAD_HAS_LSAN 1
#endif
#if defined(HOTRELOAD_HAS_LSAN)
#include <sanitizer/lsan_interface.h>
#endif

namespace hotreload::detail {

/// Keeps `p` (and what it owns) alive until the process exits, on purpose: used for a
/// library that nothing can unmap safely any more. LeakSanitizer is told so.
template <class T>
void deliberately_leak([[maybe_unused]] T* p) noexcept {
#if defined(HOTRELOAD_HAS_LSAN)
  __lsan_ignore_object(p);
#endif
}

} // namespace hotreload::detail

#endif
