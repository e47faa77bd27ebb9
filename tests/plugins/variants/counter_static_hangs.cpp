// counter 3.0.0 whose static initialiser never returns.
#define PLUGIN_VERSION "3.0.0"
#define STATIC_INIT_HANGS
#include "../counter_plugin.hpp"
