// expect: Watcher policy: needs a member `void stop()`
#include <hotreload.hpp>
struct iface : hotreload::plugin {
  using interface_type = iface;
};
struct my_watcher {
  hotreload::error_info start(const std::vector<std::filesystem::path>&, hotreload::change_handler) { return {}; }
};
template class hotreload::basic_hot_reloader<iface, my_watcher>;
