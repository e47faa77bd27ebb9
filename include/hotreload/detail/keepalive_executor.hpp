#ifndef HOTRELOAD_DETAIL_KEEPALIVE_EXECUTOR_HPP
#define HOTRELOAD_DETAIL_KEEPALIVE_EXECUTOR_HPP

#include <boost/asio/execution.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/query.hpp>
#include <boost/asio/require.hpp>

#include <memory>
#include <utility>

namespace hotreload::detail {

/// An executor that behaves as `Executor` and also owns a reference to a plugin version.
/// Asio keeps a copy of an I/O object's executor in the object and in every pending
/// operation, so whatever a plugin creates with its context's executor keeps the plugin's
/// code mapped until the last completion handler has run.
template <class Executor>
class keepalive_executor {
public:
  keepalive_executor(Executor ex, std::shared_ptr<const void> keep) noexcept
      : ex_(std::move(ex)), keep_(std::move(keep)) {}

  template <class Property>
    requires boost::asio::can_query<const Executor&, const Property&>::value
  decltype(auto) query(const Property& p) const
      noexcept(boost::asio::is_nothrow_query<const Executor&, const Property&>::value) {
    return boost::asio::query(ex_, p);
  }

  template <class Property>
    requires boost::asio::can_require<const Executor&, const Property&>::value
  auto require(const Property& p) const {
    using inner = std::decay_t<decltype(boost::asio::require(ex_, p))>;
    return keepalive_executor<inner>(boost::asio::require(ex_, p), keep_);
  }

  template <class Property>
    requires boost::asio::can_prefer<const Executor&, const Property&>::value
  auto prefer(const Property& p) const {
    using inner = std::decay_t<decltype(boost::asio::prefer(ex_, p))>;
    return keepalive_executor<inner>(boost::asio::prefer(ex_, p), keep_);
  }

  template <class F>
  void execute(F&& f) const {
    ex_.execute([keep = keep_, f = std::forward<F>(f)]() mutable { std::move(f)(); });
  }

  friend bool operator==(const keepalive_executor& a, const keepalive_executor& b) noexcept {
    return a.ex_ == b.ex_ && a.keep_ == b.keep_;
  }
  friend bool operator!=(const keepalive_executor& a, const keepalive_executor& b) noexcept {
    return !(a == b);
  }

  const Executor& inner() const noexcept { return ex_; }

private:
  Executor ex_;
  std::shared_ptr<const void> keep_;
};

} // namespace hotreload::detail

#endif
