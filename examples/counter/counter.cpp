// The counter plugin: `increment` and `show`. Its count is its state: get_reload_state hands
// it to the next version, set_reload_state receives it, so it survives every reload.
// Built twice: COUNTER_VERSION "1.0.0" and "2.0.0", which also knows `reset` and stores
// its state in a new format, {"total": N} (state_version 2), converting version 1's
// {"count": N} in migrate_state.
#include "command.hpp"

#include <hotreload/export.hpp>

#include <atomic>

class counter final : public command_plugin {
public:
  explicit counter(const hotreload::plugin_context& ctx) : log_(ctx.log()) {}

  std::string execute(std::string_view command) override {
    if (command == "increment") ++count_;
#if COUNTER_MAJOR >= 2
    else if (command == "reset") count_ = 0;
#endif
    else if (command != "show") return "counter " COUNTER_VERSION ": unknown command '" + std::string(command) + "'";
    return "count = " + std::to_string(count_.load()) + " (counter " COUNTER_VERSION ")";
  }

#if COUNTER_MAJOR < 2
  hotreload::awaitable<boost::json::value> get_reload_state() override {
    co_return boost::json::object{{"count", count_.load()}};
  }
  hotreload::awaitable<void> set_reload_state(boost::json::value state) override {
    count_ = state.at("count").to_number<std::int64_t>();
    co_return;
  }
#else
  hotreload::awaitable<boost::json::value> get_reload_state() override {
    co_return boost::json::object{{"total", count_.load()}};
  }
  hotreload::awaitable<void> set_reload_state(boost::json::value state) override {
    count_ = state.at("total").to_number<std::int64_t>();
    co_return;
  }
  // Called instead of handing over a state of another format: version 1's {"count": N}.
  hotreload::awaitable<boost::json::value> migrate_state(std::int64_t from, boost::json::value state) override {
    if (from != 1) co_return co_await command_plugin::migrate_state(from, std::move(state)); // refuses
    boost::json::object migrated{{"total", state.at("count")}};
    co_return migrated;
  }
#endif
  hotreload::awaitable<void> on_reload_async() override {
    log_.info("counter " COUNTER_VERSION " took over at count " + std::to_string(count_.load()));
    co_return;
  }

private:
  hotreload::plugin_logger log_;
  std::atomic<std::int64_t> count_ = 0;
};

HOTRELOAD_PLUGIN(counter, R"({"name": "counter", "version": ")" COUNTER_VERSION R"(", "state_version": )" COUNTER_STATE_VERSION "}")
