// counter 3.0.0 whose static initialiser maps 80 MB it never unmaps (loaded only by probes).
#define PLUGIN_VERSION "3.0.0"
#define STATIC_INIT_LEAKS
#include "../counter_plugin.hpp"
