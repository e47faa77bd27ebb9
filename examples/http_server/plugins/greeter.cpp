// Serves GET /hello?name=X. The demo edits the greeting below, rebuilds this file and the
// running server answers with the new text.
#include "handler.hpp" // found through the example's include directory

#include <hotreload/export.hpp>

#include <atomic>
#include <memory>

constexpr const char* greeting = "Hello";

class greeter final : public http_handler {
public:
  explicit greeter(const hotreload::plugin_context&) {}

  hotreload::awaitable<http_reply> handle(http_request request) override {
    http_reply reply;
    if (request.method != "GET") {
      reply.status = 405;
      reply.body = "use GET /hello?name=you\n";
      co_return reply;
    }
    std::string name = "world";
    if (auto it = request.query.find("name"); it != request.query.end()) name = it->second;
    reply.body = std::string(greeting) + ", " + name + "!\n";
    ++greeted_;
    co_return reply;
  }

  // The number of greetings survives reloads.
  hotreload::awaitable<boost::json::value> get_reload_state() override {
    co_return boost::json::object{{"greeted", greeted_.load()}};
  }
  // Shared, not copied: it reads what it needs (set_reload_state would get a copy).
  hotreload::awaitable<void> adopt_reload_state(std::shared_ptr<const boost::json::value> state) override {
    if (auto* n = state->is_object() ? state->as_object().if_contains("greeted") : nullptr)
      greeted_ = n->to_number<std::int64_t>();
    co_return;
  }

private:
  std::atomic<std::int64_t> greeted_ = 0;
};

HOTRELOAD_PLUGIN(greeter, R"({"name": "greeter", "version": "1.0.0"})")
