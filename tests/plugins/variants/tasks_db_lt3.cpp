// tasks 1.1.0, which requires db <3.
#define PLUGIN_NAME "tasks"
#define PLUGIN_VERSION "1.1.0"
#define DEP1 "db"
#define DEP1_REQ "<3"
#include "../counter_plugin.hpp"
