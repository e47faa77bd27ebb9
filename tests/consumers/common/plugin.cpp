// The consumer projects' plugin: a count that survives reloads. TALLY_VERSION names the build
// (1 or 2).
#include <tally.hpp>

#include <hotreload/export.hpp>

#include <cstdint>

#ifndef TALLY_VERSION
#define TALLY_VERSION "1"
#endif

class counting final : public tally {
public:
  explicit counting(const hotreload::plugin_context&) {}
  std::string version() const override { return TALLY_VERSION; }
  int add() override { return ++count_; }
  hotreload::awaitable<boost::json::value> get_reload_state() override { co_return boost::json::object{{"count", count_}}; }
  hotreload::awaitable<void> set_reload_state(boost::json::value s) override {
    count_ = static_cast<int>(s.at("count").to_number<std::int64_t>());
    co_return;
  }

private:
  int count_ = 0;
};

HOTRELOAD_PLUGIN(counting, R"({"name": "tally", "version": ")" TALLY_VERSION R"(.0.0"})")
