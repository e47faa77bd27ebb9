// db 1.0.0: the root of the dependency graph (db <- tasks, db <- reports, tasks and reports <- top).
#define PLUGIN_NAME "db"
#define PLUGIN_VERSION "1.0.0"
#include "../counter_plugin.hpp"
