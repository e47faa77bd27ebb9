// counter 2.0.0 with state format 2 ({"total", "history"}) and a migration from format 1.
#define PLUGIN_VERSION "2.0.0"
#define STATE_V2
#include "../counter_plugin.hpp"
