// counter 3.0.0 whose static initialiser starts a thread that never ends (loaded only by probes).
#define PLUGIN_VERSION "3.0.0"
#define STATIC_INIT_THREAD
#include "../counter_plugin.hpp"
