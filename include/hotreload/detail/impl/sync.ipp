#ifndef HOTRELOAD_DETAIL_IMPL_SYNC_IPP
#define HOTRELOAD_DETAIL_IMPL_SYNC_IPP

// The coroutines of sync.hpp: inline by default, compiled once with
// HOTRELOAD_SEPARATE_COMPILATION (<hotreload/src.hpp>).

#include <hotreload/detail/sync.hpp>

namespace hotreload::detail {

HOTRELOAD_DECL awaitable<bool> async_event::wait_until(clock::time_point deadline) {
  if (!set_) {
    auto t = std::make_shared<asio::steady_timer>(co_await asio::this_coro::executor, deadline);
    waiters_.push_back(t);
    co_await t->async_wait(asio::as_tuple(asio::use_awaitable));
    std::erase(waiters_, t);
  }
  co_return set_;
}

HOTRELOAD_DECL awaitable<void> async_mutex::lock() {
  if (!locked_) {
    locked_ = true;
    co_return;
  }
  auto turn = std::make_shared<async_event>();
  waiters_.push_back(turn);
  co_await turn->wait();
}

// (Named types, not local ones: a coroutine's frame is a type with linkage, and g++ warns of
// a local type in it when the coroutine is not inline.)
struct join_state {
  std::size_t left = 0;
  std::exception_ptr error;
  async_event done;
};

HOTRELOAD_DECL awaitable<void> join(strand_t strand, std::vector<awaitable<void>> tasks) {
  auto st = std::make_shared<join_state>();
  st->left = tasks.size();
  for (auto& t : tasks)
    asio::co_spawn(strand, std::move(t), [st](std::exception_ptr e) {
      if (e && !st->error) st->error = e;
      if (--st->left == 0) st->done.set();
    });
  if (st->left > 0) co_await st->done.wait();
  if (st->error) std::rethrow_exception(st->error);
}

// Sets its event when it goes.
struct set_when_done {
  async_event& e;
  ~set_when_done() { e.set(); }
};

HOTRELOAD_DECL awaitable<void> dag_node(std::vector<async_event>& done, const std::vector<std::size_t>& preds,
                                        const dag_step& fn, std::size_t i) {
  set_when_done guard{done[i]};
  for (auto p : preds) co_await done[p].wait();
  co_await fn(i);
}

HOTRELOAD_DECL awaitable<void> run_dag(strand_t strand, const std::vector<std::vector<std::size_t>>& preds, dag_step fn) {
  if (preds.size() == 1) { // one node (a reload of one plugin): no task to spawn and join, awaited here
    co_await fn(0);
    co_return;
  }
  std::vector<async_event> done(preds.size());
  std::vector<awaitable<void>> tasks;
  for (std::size_t i = 0; i < preds.size(); ++i) tasks.push_back(dag_node(done, preds[i], fn, i));
  co_await join(std::move(strand), std::move(tasks));
}

} // namespace hotreload::detail

#endif
