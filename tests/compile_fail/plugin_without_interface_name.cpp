// expect: that names itself: write `using interface_type = my_interface;`
#include <hotreload/export.hpp>
struct unnamed : hotreload::plugin {
  virtual int f() = 0;
};
struct impl : unnamed {
  explicit impl(const hotreload::plugin_context&) {}
  int f() override { return 1; }
};
HOTRELOAD_PLUGIN(impl, R"({"name": "x"})")
