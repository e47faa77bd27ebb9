// narcissus, which depends on itself.
#define PLUGIN_NAME "narcissus"
#define DEP1 "narcissus"
#include "../counter_plugin.hpp"
