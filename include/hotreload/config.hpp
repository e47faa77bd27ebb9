#ifndef HOTRELOAD_CONFIG_HPP
#define HOTRELOAD_CONFIG_HPP

#if __cplusplus < 202002L
#error "hotreload needs C++20 (coroutines, concepts): compile with -std=c++20 (meson: cpp_std=c++20; CMake: cxx_std_20)"
#endif

// Boost.DLL must be configured the same way in every translation unit of a program;
// mixing std::filesystem and Boost.Filesystem builds gives link errors and ODR violations.
#ifndef BOOST_DLL_USE_STD_FS
#define BOOST_DLL_USE_STD_FS 1
#endif

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

/// Header-only by default. With HOTRELOAD_SEPARATE_COMPILATION defined in every file of a
/// program, the engine is compiled once, in the one file that includes <hotreload/src.hpp>
/// (README: "Compile time").
#ifdef HOTRELOAD_SEPARATE_COMPILATION
#define HOTRELOAD_DECL
#else
#define HOTRELOAD_DECL inline
#endif

/// The ABI version of the host/plugin contract. Bumped whenever anything a plugin and its
/// host share (exported symbols, plugin_context, the plugin base class) changes layout.
#define HOTRELOAD_ABI_VERSION 3

namespace hotreload {

namespace asio = boost::asio;

/// The error code type of every asynchronous operation (Asio's own).
using error_code = boost::system::error_code;

/// Coroutine type of the plugin hooks.
template <class T>
using awaitable = asio::awaitable<T, asio::any_io_executor>;

} // namespace hotreload

#endif
