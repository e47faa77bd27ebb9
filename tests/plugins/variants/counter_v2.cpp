// counter 2.0.0: the same plugin, one version up, for reloads.
#define PLUGIN_VERSION "2.0.0"
#include "../counter_plugin.hpp"
