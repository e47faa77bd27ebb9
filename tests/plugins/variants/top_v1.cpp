// top 1.0.0, which depends on tasks and reports (the top of a diamond).
#define PLUGIN_NAME "top"
#define PLUGIN_VERSION "1.0.0"
#define DEP1 "tasks"
#define DEP2 "reports"
#include "../counter_plugin.hpp"
