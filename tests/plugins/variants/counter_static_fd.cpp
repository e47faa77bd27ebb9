// counter 3.0.0 whose static initialiser opens a descriptor it never closes (loaded only by probes).
#define PLUGIN_VERSION "3.0.0"
#define STATIC_INIT_FD
#include "../counter_plugin.hpp"
