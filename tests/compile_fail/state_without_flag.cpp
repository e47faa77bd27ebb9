// expect: State policy: needs `static constexpr bool preserves_state = true;`
#include <hotreload.hpp>
struct iface : hotreload::plugin {
  using interface_type = iface;
};
struct my_state {
  hotreload::error_info save(std::string_view, const boost::json::object&) { return {}; }
  std::optional<boost::json::object> load(std::string_view) { return {}; }
};
template class hotreload::basic_hot_reloader<iface, hotreload::manual_watcher, hotreload::dll_loader, my_state>;
