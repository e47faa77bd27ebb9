// tasks 2.0.0, which depends on db, and whose on_reload_async throws.
#define PLUGIN_NAME "tasks"
#define PLUGIN_VERSION "2.0.0"
#define DEP1 "db"
#define FAIL_ON_RELOAD
#include "../counter_plugin.hpp"
