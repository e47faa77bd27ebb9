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
///
/// It holds a single `shared_ptr` to the executor and the reference, so that it fits in
/// `any_io_executor`'s inline storage. A larger executor would be put behind Asio's own
/// `shared_target_executor`, whose reference count ends with a standalone acquire fence;
/// ThreadSanitizer does not model such fences and reports the last release of every such
/// executor as a data race, in the user's program too.
template <class Executor>
class keepalive_executor {
  struct target {
    Executor ex;
    std::shared_ptr<const void> keep;
  };

public:
  keepalive_executor(Executor ex, std::shared_ptr<const void> keep)
      : t_(std::make_shared<const target>(target{std::move(ex), std::move(keep)})) {}

  template <class Property>
    requires boost::asio::can_query<const Executor&, const Property&>::value
  decltype(auto) query(const Property& p) const
      noexcept(boost::asio::is_nothrow_query<const Executor&, const Property&>::value) {
    return boost::asio::query(t_->ex, p);
  }

  template <class Property>
    requires boost::asio::can_require<const Executor&, const Property&>::value
  auto require(const Property& p) const {
    using inner_type = std::decay_t<decltype(boost::asio::require(t_->ex, p))>;
    return keepalive_executor<inner_type>(boost::asio::require(t_->ex, p), t_->keep);
  }

  template <class Property>
    requires boost::asio::can_prefer<const Executor&, const Property&>::value
  auto prefer(const Property& p) const {
    using inner_type = std::decay_t<decltype(boost::asio::prefer(t_->ex, p))>;
    return keepalive_executor<inner_type>(boost::asio::prefer(t_->ex, p), t_->keep);
  }

  template <class F>
  void execute(F&& f) const {
    t_->ex.execute([t = t_, f = std::forward<F>(f)]() mutable { std::move(f)(); });
  }

  friend bool operator==(const keepalive_executor& a, const keepalive_executor& b) noexcept {
    return a.t_ == b.t_ || (a.t_->ex == b.t_->ex && a.t_->keep == b.t_->keep);
  }
  friend bool operator!=(const keepalive_executor& a, const keepalive_executor& b) noexcept {
    return !(a == b);
  }

  const Executor& inner() const noexcept { return t_->ex; }

private:
  std::shared_ptr<const target> t_;
};

} // namespace hotreload::detail

#endif
