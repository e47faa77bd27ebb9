// A greeter plugin. Built twice with another GREETING: version 1 says Hello, 2 says Howdy.
// It counts the people it greeted and hands the count to the next version.
#include "greeter.hpp"

#include <hotreload/export.hpp>

class english final : public greeter {
public:
  explicit english(const hotreload::plugin_context& ctx) : ctx_(ctx) {}

  std::string greet(std::string_view name) override {
    return std::string(GREETING) + ", " + std::string(name) + "! (greeting #" + std::to_string(++greeted_) +
           ", english " VERSION ")";
  }

  hotreload::awaitable<boost::json::value> get_reload_state() override {
    co_return boost::json::object{{"greeted", greeted_}};
  }
  hotreload::awaitable<void> set_reload_state(boost::json::value state) override {
    greeted_ = static_cast<int>(state.at("greeted").to_number<std::int64_t>());
    co_return;
  }
  hotreload::awaitable<void> on_reload_async() override {
    ctx_.log().info("english " VERSION " took over after " + std::to_string(greeted_) + " greetings");
    co_return;
  }

private:
  hotreload::plugin_context ctx_;
  int greeted_ = 0;
};

HOTRELOAD_PLUGIN(english, R"({"name": "english", "version": ")" VERSION R"("})")
