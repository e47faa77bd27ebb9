#ifndef HOTRELOAD_DETAIL_RESULT_HPP
#define HOTRELOAD_DETAIL_RESULT_HPP

// The library's one error convention. A step that can fail returns `error_info`, empty when
// it succeeded; a step that also yields a value returns `result<T>`. The code is chosen where
// the failure is found and travels with it: nothing derives a code from a message's text.

#include <hotreload/error.hpp>

#include <exception>
#include <string>
#include <utility>

namespace hotreload::detail {

/// A value, or the failure that prevented it (then `value` is default-constructed).
template <class T>
struct result {
  T value{};
  error_info error{};

  explicit operator bool() const noexcept { return !error; }
};

inline error_info fail(errc code, std::string plugin, std::string message) {
  return {make_error_code(code), std::move(plugin), std::move(message)};
}

/// Keeps the first of several failures (an operation completes with it).
class first_error {
public:
  /// Notes `e`; returns it, so a call can wrap the expression that produced it.
  const error_info& operator()(const error_info& e) {
    if (e && !first_) first_ = e;
    return e;
  }
  const error_info& get() const noexcept { return first_; }

private:
  error_info first_;
};

/// The message of an exception, whatever it is.
inline std::string describe(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "an exception of a type not derived from std::exception";
  }
}

} // namespace hotreload::detail

#endif
