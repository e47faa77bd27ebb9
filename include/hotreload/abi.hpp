#ifndef HOTRELOAD_ABI_HPP
#define HOTRELOAD_ABI_HPP

#include <hotreload/config.hpp>
#include <hotreload/detail/result.hpp>
#include <hotreload/plugin.hpp>

#include <boost/version.hpp>

#include <concepts>
#include <cstdint>
#include <cstdio>
#include <string>
#include <typeinfo>

namespace hotreload {

/// Everything a plugin and its host must agree on, exported by HOTRELOAD_PLUGIN as the data
/// symbol `hotreload_abi_tag` and compared before any factory runs. The first two fields
/// keep their meaning in every future ABI version.
struct abi_tag {
  std::uint32_t size;              ///< sizeof(abi_tag) of the plugin's build
  std::uint32_t abi_version;       ///< HOTRELOAD_ABI_VERSION
  std::uint32_t pointer_size;
  std::uint32_t boost_version;     ///< BOOST_VERSION: Asio and JSON types cross the boundary
  std::uint32_t stdlib_abi;        ///< libstdc++ dual ABI and debug mode, or libc++
  std::uint32_t interface_version; ///< Interface::interface_version, or 0
  std::uint32_t interface_size;    ///< sizeof(Interface)
  const char* interface_name;      ///< mangled name of Interface (compiler-independent)
  const char* compiler;            ///< for messages only: mixed g++/clang builds are fine
  /// The interface header's fingerprint (its text without comments and whitespace), when the
  /// build helpers give one (HOTRELOAD_INTERFACE_FINGERPRINT), else 0; and which headers.
  std::uint64_t interface_fingerprint;
  const char* fingerprinted_headers;
};

/// The interface a plugin class implements: the interface's own `interface_type`.
template <class T>
concept named_interface = requires { typename T::interface_type; } &&
                          std::derived_from<typename T::interface_type, plugin>;

/// An interface that names itself: what a host instantiates basic_hot_reloader with.
template <class I>
concept self_named_interface = named_interface<I> && std::same_as<typename I::interface_type, I>;

namespace detail {

constexpr std::uint32_t stdlib_abi() noexcept {
  std::uint32_t v = 0;
#if defined(_GLIBCXX_USE_CXX11_ABI)
  v |= _GLIBCXX_USE_CXX11_ABI ? 1u : 2u;
#endif
#if defined(_GLIBCXX_DEBUG)
  v |= 4u; // debug-mode containers have another layout
#endif
#if defined(_LIBCPP_VERSION)
  v |= 8u;
#endif
  return v;
}

#define HOTRELOAD_STR2(x) #x
#define HOTRELOAD_STR(x) HOTRELOAD_STR2(x)
#if defined(__clang__)
inline constexpr const char* compiler_id =
    "clang " HOTRELOAD_STR(__clang_major__) "." HOTRELOAD_STR(__clang_minor__);
#elif defined(__GNUC__)
inline constexpr const char* compiler_id =
    "g++ " HOTRELOAD_STR(__GNUC__) "." HOTRELOAD_STR(__GNUC_MINOR__);
#else
inline constexpr const char* compiler_id = "unknown compiler";
#endif

#if defined(HOTRELOAD_INTERFACE_FINGERPRINT) && defined(HOTRELOAD_INTERFACE_HEADERS)
inline constexpr std::uint64_t interface_fingerprint = HOTRELOAD_INTERFACE_FINGERPRINT;
inline constexpr const char* fingerprinted_headers = HOTRELOAD_INTERFACE_HEADERS;
#else
inline constexpr std::uint64_t interface_fingerprint = 0;
inline constexpr const char* fingerprinted_headers = "";
#endif

template <class I>
constexpr std::uint32_t interface_version() noexcept {
  if constexpr (requires { I::interface_version; })
    return static_cast<std::uint32_t>(I::interface_version);
  else
    return 0;
}

} // namespace detail

/// The tag a plugin for Interface carries, and that a host for Interface expects.
///
/// It describes the compilation it is computed in, so a plugin must never run the host's
/// copy: a host linked with export-dynamic exports its instantiation, and an unoptimised
/// plugin calls this function through the PLT, where the host's copy would win. Hidden
/// visibility keeps every copy private to its own library, and the parts are constants
/// of this compilation, not calls.
template <class Interface>
[[gnu::visibility("hidden")]] abi_tag make_abi_tag() noexcept {
  constexpr std::uint32_t stdlib = detail::stdlib_abi();
  constexpr std::uint32_t version = detail::interface_version<Interface>();
  constexpr const char* compiler = detail::compiler_id;
  constexpr std::uint64_t fingerprint = detail::interface_fingerprint;
  constexpr const char* headers = detail::fingerprinted_headers;
  return abi_tag{sizeof(abi_tag),
                 HOTRELOAD_ABI_VERSION,
                 sizeof(void*),
                 BOOST_VERSION,
                 stdlib,
                 version,
                 sizeof(Interface),
                 typeid(Interface).name(),
                 compiler,
                 fingerprint,
                 headers};
}

namespace detail {

/// Whether `theirs` (a plugin's tag) fits `ours` (the host's): empty if it does, else an
/// errc::abi_mismatch error saying what differs and the fix.
inline error_info abi_problem(const abi_tag& ours, const abi_tag& theirs) {
  auto num = [](std::uint32_t v) { return std::to_string(v); };
  auto hex = [](std::uint64_t v) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return std::string(buf);
  };
  auto refuse = [](std::string why) { return fail(errc::abi_mismatch, {}, std::move(why)); };
  if (theirs.size < 2 * sizeof(std::uint32_t) || theirs.abi_version != ours.abi_version)
    return refuse("it was built against hotreload ABI version " + num(theirs.abi_version) + ", the host uses " +
                  num(ours.abi_version) + "; rebuild the plugin with the host's hotreload headers");
  if (theirs.size != ours.size || theirs.pointer_size != ours.pointer_size)
    return refuse("its ABI tag has another layout; rebuild the plugin with the host's hotreload headers");
  if (theirs.boost_version != ours.boost_version)
    return refuse("it was built with Boost " + num(theirs.boost_version) + ", the host with Boost " +
                  num(ours.boost_version) + "; rebuild it against the host's Boost");
  if (theirs.stdlib_abi != ours.stdlib_abi)
    return refuse("its C++ standard library ABI (" + num(theirs.stdlib_abi) + ", built by " + theirs.compiler +
                  ") differs from the host's (" + num(ours.stdlib_abi) +
                  "); build both with the same standard library and _GLIBCXX_USE_CXX11_ABI/_GLIBCXX_DEBUG settings");
  if (std::string_view(theirs.interface_name) != ours.interface_name)
    return refuse(std::string("it implements interface '") + theirs.interface_name + "', the host expects '" +
                  ours.interface_name + "'; build it against the host's interface header");
  if (theirs.interface_version != ours.interface_version || theirs.interface_size != ours.interface_size)
    return refuse("it was built against another version of interface '" + std::string(ours.interface_name) +
                  "' (version " + num(theirs.interface_version) + ", size " + num(theirs.interface_size) +
                  "; the host has version " + num(ours.interface_version) + ", size " + num(ours.interface_size) +
                  "); rebuild it against the host's interface header");
  // Compared only when both sides were built with the helpers that compute it.
  if (theirs.interface_fingerprint && ours.interface_fingerprint &&
      theirs.interface_fingerprint != ours.interface_fingerprint)
    return refuse("it was built against another text of " + std::string(ours.fingerprinted_headers) +
                  " than the host (interface fingerprint " + hex(theirs.interface_fingerprint) + " of " +
                  theirs.fingerprinted_headers + ", the host's " + hex(ours.interface_fingerprint) +
                  ") with the same interface_version " + num(ours.interface_version) +
                  "; rebuild it against the host's header, and bump interface_version whenever the interface changes");
  return {};
}

} // namespace detail

/// Empty if `theirs` (a plugin's) fits `ours` (the host's); else what differs and the fix.
inline std::string abi_mismatch(const abi_tag& ours, const abi_tag& theirs) {
  return detail::abi_problem(ours, theirs).message;
}

} // namespace hotreload

#endif
