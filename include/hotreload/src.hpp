#ifndef HOTRELOAD_SRC_HPP
#define HOTRELOAD_SRC_HPP

// The engine, compiled once: include this in exactly one source file of a program built with
// HOTRELOAD_SEPARATE_COMPILATION defined in every file (as Asio's <boost/asio/impl/src.hpp>).
// The build systems do it for you: CMake's hotreload::separate, meson's
// dependency('hotreload-separate'), pkg-config's `separate_source` (README: "Compile time").

#ifndef HOTRELOAD_SEPARATE_COMPILATION
#error "<hotreload/src.hpp> is for programs built with HOTRELOAD_SEPARATE_COMPILATION defined in every file; without it, the engine is compiled in each file that includes <hotreload.hpp> and this file is not needed"
#endif

#include <hotreload.hpp>
// The library's coroutines outside templates and the plugin base class, which g++ would
// otherwise compile in each file, used or not (docs/guide.md, "Inside the reloader").
#include <hotreload/detail/impl/engine_handle.ipp>
#include <hotreload/detail/impl/sync.ipp>
#include <hotreload/detail/linux/impl/child_process.ipp>
#include <hotreload/detail/linux/impl/probe.ipp>
#include <hotreload/loader/impl/dll_loader.ipp>
#include <hotreload/watcher/impl/rebuild_watcher.ipp>

#endif
