// cycle_a, which depends on cycle_b (which depends on cycle_a).
#define PLUGIN_NAME "cycle_a"
#define DEP1 "cycle_b"
#include "../counter_plugin.hpp"
