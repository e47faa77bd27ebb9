// lonely, which depends on a plugin that never exists.
#define PLUGIN_NAME "lonely"
#define DEP1 "nothere"
#include "../counter_plugin.hpp"
