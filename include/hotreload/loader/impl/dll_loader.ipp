#ifndef HOTRELOAD_LOADER_IMPL_DLL_LOADER_IPP
#define HOTRELOAD_LOADER_IMPL_DLL_LOADER_IPP

// dll_loader's coroutine: inline by default, compiled once with
// HOTRELOAD_SEPARATE_COMPILATION (<hotreload/src.hpp>).

#include <hotreload/loader/dll_loader.hpp>

namespace hotreload {

// g++ 12 at -O2 may inline this coroutine's frame allocation (Asio's aligned_alloc) and then
// warn that Asio's operator delete, which frees it, does not match (-Wmismatched-new-delete):
// a false positive, seen in a program built with separate compilation.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
HOTRELOAD_DECL awaitable<std::pair<loaded_library, error_info>> dll_loader::async_load(std::filesystem::path source) {
  auto m = stage(source);
  // Not in conditional expressions: g++ 12 mishandles co_await there.
  if (m && m.value.answer >= 0) {
    auto within = detail::answer_limit(probe_timeout_);
    auto answer = co_await detail::probe_server::async_read_result(std::exchange(m.value.answer, -1), within);
    if (answer.kind != detail::probe_result::unanswered && m.value.written()) { // written in place while probed: the probe may have read other bytes
      answer = {};
      if (auto fd = ask_probe(m.value.copy->image, source, m.value.copy->first))
        answer = co_await detail::probe_server::async_read_result(fd.value, within);
    }
    m.error = verdict(answer, source);
  }
  auto lib = m ? map(std::move(m.value.copy)) : detail::result<loaded_library>{{}, m.error};
  co_return std::pair<loaded_library, error_info>(std::move(lib.value), std::move(lib.error));
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

} // namespace hotreload

#endif
