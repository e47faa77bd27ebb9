// expect: T is abstract: implement every pure virtual function of its interface
#include <hotreload/export.hpp>
struct iface : hotreload::plugin {
  using interface_type = iface;
  virtual int f() = 0;
};
struct impl : iface {
  explicit impl(const hotreload::plugin_context&) {}
};
HOTRELOAD_PLUGIN(impl, R"({"name": "x"})")
