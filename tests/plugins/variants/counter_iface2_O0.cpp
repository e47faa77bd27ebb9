// counter 9.0.0 built against version 2 of counter_iface, unoptimised (-O0): must be refused,
// also by a host that exports its symbols (its ABI tag must be its own, not the host's).
#define PLUGIN_VERSION "9.0.0"
#define COUNTER_INTERFACE_VERSION 2
#include "../counter_plugin.hpp"
