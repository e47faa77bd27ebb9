// A plugin for another interface, but claiming the name "counter": the host must refuse it.
#include "counter_iface.hpp"

#include <hotreload/export.hpp>

class other_plugin final : public test::other_iface {
public:
  explicit other_plugin(const hotreload::plugin_context&) {}
  int answer() const override { return 42; }
};

HOTRELOAD_PLUGIN(other_plugin, R"({"name": "counter", "version": "9.0.0"})")
