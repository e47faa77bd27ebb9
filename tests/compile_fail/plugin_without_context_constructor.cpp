// expect: T needs a constructor taking `hotreload::plugin_context`
#include <hotreload/export.hpp>
struct iface : hotreload::plugin {
  using interface_type = iface;
};
struct impl : iface {
  impl() = default;
};
HOTRELOAD_PLUGIN(impl, R"({"name": "x"})")
