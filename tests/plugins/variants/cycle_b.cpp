// cycle_b, which depends on cycle_a (which depends on cycle_b).
#define PLUGIN_NAME "cycle_b"
#define DEP1 "cycle_a"
#include "../counter_plugin.hpp"
