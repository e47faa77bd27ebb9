#ifndef HOTRELOAD_EXPORT_HPP
#define HOTRELOAD_EXPORT_HPP

#include <hotreload/abi.hpp>
#include <hotreload/plugin.hpp>

#include <exception>
#include <string>

// Linux (ELF) only, like the rest of the library.
#define HOTRELOAD_EXPORT __attribute__((visibility("default"), used))

namespace hotreload::detail {

/// The signature of the exported factory. It never throws: a constructor's exception is
/// turned into `error` inside the plugin, so no exception object crosses the boundary.
using create_fn = void*(const plugin_context& context, std::string& error) noexcept;

template <class T>
consteval bool check_plugin_class() {
  static_assert(named_interface<T>,
                "HOTRELOAD_PLUGIN(T, ...): T must implement an interface derived from hotreload::plugin "
                "that names itself: write `using interface_type = my_interface;` inside my_interface");
  if constexpr (named_interface<T>) {
    static_assert(std::derived_from<T, typename T::interface_type>,
                  "HOTRELOAD_PLUGIN(T, ...): T must derive from T::interface_type");
    static_assert(std::constructible_from<T, const plugin_context&>,
                  "HOTRELOAD_PLUGIN(T, ...): T needs a constructor taking `hotreload::plugin_context` "
                  "(or `const hotreload::plugin_context&`)");
    static_assert(!std::is_abstract_v<T>,
                  "HOTRELOAD_PLUGIN(T, ...): T is abstract: implement every pure virtual function of its interface");
  }
  return true;
}

template <class T>
void* create_plugin(const plugin_context& context, std::string& error) noexcept {
  try {
    // Converted here, where the full type is known; the host casts back from void*.
    return static_cast<typename T::interface_type*>(new T(context));
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "an exception of a type not derived from std::exception";
  }
  return nullptr;
}

} // namespace hotreload::detail

/// Exports plugin class `type` with its metadata (a JSON object literal: "name", "version",
/// optional "depends_on" and "state_version"), for example
/// `HOTRELOAD_PLUGIN(counter_plugin, R"({"name": "counter", "version": "1.0.0"})")`.
/// Use it once per shared library, at namespace scope.
#define HOTRELOAD_PLUGIN(type, metadata_json)                                                     \
  static_assert(::hotreload::detail::check_plugin_class<type>());                                 \
  extern "C" HOTRELOAD_EXPORT const ::hotreload::abi_tag hotreload_abi_tag =                      \
      ::hotreload::make_abi_tag<type::interface_type>();                                          \
  extern "C" HOTRELOAD_EXPORT const char hotreload_metadata[] = metadata_json;                    \
  extern "C" HOTRELOAD_EXPORT void* hotreload_create(const ::hotreload::plugin_context& context,  \
                                                     std::string& error) noexcept {               \
    return ::hotreload::detail::create_plugin<type>(context, error);                              \
  }

#endif
