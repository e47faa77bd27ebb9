// counter 9.0.0 built against version 2 of counter_iface, optimised (-O2): must be refused.
#define PLUGIN_VERSION "9.0.0"
#define COUNTER_INTERFACE_VERSION 2
#include "../counter_plugin.hpp"
