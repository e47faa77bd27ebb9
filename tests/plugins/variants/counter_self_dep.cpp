// counter 3.0.0 that depends on itself.
#define PLUGIN_VERSION "3.0.0"
#define DEP1 "counter"
#include "../counter_plugin.hpp"
