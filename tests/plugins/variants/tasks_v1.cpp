// tasks 1.0.0, which depends on db.
#define PLUGIN_NAME "tasks"
#define PLUGIN_VERSION "1.0.0"
#define DEP1 "db"
#include "../counter_plugin.hpp"
