#ifndef HOTRELOAD_DETAIL_ASYNC_HPP
#define HOTRELOAD_DETAIL_ASYNC_HPP

#include <hotreload/error.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>

#include <exception>
#include <memory>
#include <type_traits>

namespace hotreload::detail {

/// Tokens whose natural form is "throw on error". With them an operation completes with
/// `void(std::exception_ptr, T...)` carrying a hot_reload_error (code, plugin, message);
/// with every other token, with `void(error_code, T...)`.
template <class Token>
struct is_throwing_token : std::false_type {};
template <class Executor>
struct is_throwing_token<boost::asio::use_awaitable_t<Executor>> : std::true_type {};
template <class Allocator>
struct is_throwing_token<boost::asio::use_future_t<Allocator>> : std::true_type {};

template <class Token, class... T>
using signature_for = std::conditional_t<is_throwing_token<std::decay_t<Token>>::value,
                                         void(std::exception_ptr, T...), void(error_code, T...)>;

/// A type-erased, move-only, one-shot completion: completes a user's handler with an
/// error_info and values, always through a post to the handler's own executor (never
/// inline), with work tracked on that executor while it waits.
template <class... T>
class completion {
public:
  completion() = default;

  template <bool Throwing, class Handler, class Executor>
  static completion make(Handler handler, const Executor& fallback) {
    completion c;
    c.impl_ = std::make_unique<impl<Throwing, Handler, Executor>>(std::move(handler), fallback);
    return c;
  }

  explicit operator bool() const noexcept { return static_cast<bool>(impl_); }

  void operator()(error_info error, T... values) {
    auto p = std::move(impl_);
    p->complete(std::move(error), std::move(values)...);
  }

private:
  struct base {
    virtual ~base() = default;
    virtual void complete(error_info, T...) = 0;
  };

  template <bool Throwing, class Handler, class Executor>
  struct impl final : base {
    using handler_executor = boost::asio::associated_executor_t<Handler, Executor>;
    impl(Handler h, const Executor& fallback)
        : work(boost::asio::get_associated_executor(h, fallback)), handler(std::move(h)) {}

    void complete(error_info error, T... values) override {
      auto ex = work.get_executor();
      work.reset();
      if constexpr (Throwing)
        boost::asio::post(ex, boost::asio::append(std::move(handler), make_exception_ptr(error),
                                                  std::move(values)...));
      else
        boost::asio::post(ex, boost::asio::append(std::move(handler), error.code, std::move(values)...));
    }

    boost::asio::executor_work_guard<handler_executor> work;
    Handler handler;
  };

  std::unique_ptr<base> impl_;
};

/// Starts an asynchronous operation: `init(completion<T...>)` runs at once and completes
/// the operation later; the token picks the signature (see is_throwing_token).
template <class... T, class Token, class Executor, class Init>
auto initiate(Token&& token, const Executor& ex, Init init) {
  return boost::asio::async_initiate<Token, signature_for<Token, T...>>(
      [ex](auto handler, Init init) {
        std::move(init)(completion<T...>::template make<is_throwing_token<std::decay_t<Token>>::value>(
            std::move(handler), ex));
      },
      token, std::move(init));
}

} // namespace hotreload::detail

#endif
