// Serves POST /counter/increment and GET /counter with {"count": N, "version": "..."}.
// The count is the plugin's state: it survives every reload.
#include "handler.hpp" // found through the example's include directory

#include <hotreload/export.hpp>

#include <boost/json/serialize.hpp>

#include <atomic>

#ifndef COUNTER_VERSION
#define COUNTER_VERSION "1.0.0"
#endif

class counter final : public http_handler {
public:
  explicit counter(const hotreload::plugin_context& ctx) : log_(ctx.log()) {}

  hotreload::awaitable<http_reply> handle(http_request request) override {
    http_reply reply;
    reply.content_type = "application/json";
    std::int64_t value = 0;
    if (request.method == "POST" && request.path == "/counter/increment") {
      value = ++count_;
    } else if (request.method == "GET" && request.path == "/counter") {
      value = count_.load();
    } else {
      reply.status = 404;
      reply.body = R"({"error": "use POST /counter/increment or GET /counter"})" "\n";
      co_return reply;
    }
    boost::json::object body{{"count", value}, {"version", COUNTER_VERSION}};
    reply.body = boost::json::serialize(body) + "\n";
    co_return reply;
  }

  hotreload::awaitable<boost::json::value> get_reload_state() override {
    co_return boost::json::object{{"count", count_.load()}};
  }
  hotreload::awaitable<void> set_reload_state(boost::json::value state) override {
    count_ = state.at("count").to_number<std::int64_t>();
    co_return;
  }
  hotreload::awaitable<void> on_reload_async() override {
    log_.info("counter " COUNTER_VERSION " serving, count " + std::to_string(count_.load()));
    co_return;
  }

private:
  hotreload::plugin_logger log_;
  std::atomic<std::int64_t> count_ = 0;
};

HOTRELOAD_PLUGIN(counter, R"({"name": "counter", "version": ")" COUNTER_VERSION R"("})")
