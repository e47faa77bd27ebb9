// expect: Interface must name itself: write `using interface_type = Interface;`
#include <hotreload.hpp>
struct iface : hotreload::plugin {};
hotreload::hot_reloader<iface>* p;
template class hotreload::basic_hot_reloader<iface>;
