// A plugin with real asynchronous hooks: setup_async opens a pool of TCP connections,
// teardown_async closes them, on_reload_async (the new version, after a reload) opens them
// again. Configured through options.plugin_config: {"pool": {"port": P, "size": N}}.
#include "echo_pool.hpp"

#include <hotreload/export.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

class pool final : public echo_pool {
public:
  explicit pool(const hotreload::plugin_context& ctx)
      : ctx_(ctx), port_(static_cast<unsigned short>(ctx.config().at("port").to_number<int>())),
        size_(ctx.config().at("size").to_number<std::size_t>()) {}

  hotreload::awaitable<void> setup_async() override { co_await open(); }
  hotreload::awaitable<void> on_reload_async() override { co_await open(); }
  hotreload::awaitable<void> teardown_async() override {
    std::lock_guard lk(mu_);
    for (auto& c : idle_) {
      boost::system::error_code ignored;
      c->shutdown(tcp::socket::shutdown_both, ignored);
      c->close(ignored);
    }
    idle_.clear();
    co_return;
  }

  hotreload::awaitable<std::string> echo(std::string line) override {
    auto c = take();
    if (!c) c = co_await connect(); // every pooled connection is busy: a temporary one
    line += '\n';
    co_await asio::async_write(*c, asio::buffer(line), asio::use_awaitable);
    std::string reply;
    auto n = co_await asio::async_read_until(*c, asio::dynamic_buffer(reply), '\n', asio::use_awaitable);
    give_back(std::move(c));
    ++echoed_;
    co_return reply.substr(0, n - 1);
  }

  std::size_t open_connections() const override {
    std::lock_guard lk(mu_);
    return idle_.size();
  }

  // Statistics survive reloads; connections do not (they are re-opened).
  hotreload::awaitable<boost::json::value> get_reload_state() override {
    co_return boost::json::object{{"echoed", echoed_.load()}};
  }
  hotreload::awaitable<void> set_reload_state(boost::json::value state) override {
    echoed_ = state.at("echoed").to_number<std::uint64_t>();
    co_return;
  }

private:
  using connection = std::unique_ptr<tcp::socket>;

  hotreload::awaitable<void> open() {
    for (std::size_t i = 0; i < size_; ++i) give_back(co_await connect());
  }
  hotreload::awaitable<connection> connect() {
    // ctx.executor(): the socket and its pending operations keep this library mapped.
    auto c = std::make_unique<tcp::socket>(ctx_.executor());
    tcp::endpoint server(asio::ip::address_v4::loopback(), port_);
    co_await c->async_connect(server, asio::use_awaitable);
    co_return c;
  }
  connection take() {
    std::lock_guard lk(mu_);
    if (idle_.empty()) return nullptr;
    auto c = std::move(idle_.back());
    idle_.pop_back();
    return c;
  }
  void give_back(connection c) {
    std::lock_guard lk(mu_);
    if (idle_.size() < size_) idle_.push_back(std::move(c)); // else the temporary one closes
  }

  hotreload::plugin_context ctx_;
  unsigned short port_;
  std::size_t size_;
  mutable std::mutex mu_;
  std::vector<connection> idle_;
  std::atomic<std::uint64_t> echoed_ = 0;
};

HOTRELOAD_PLUGIN(pool, R"({"name": "pool", "version": "1.0.0"})")
