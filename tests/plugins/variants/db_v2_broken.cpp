// db 2.0.0 whose on_reload_async throws.
#define PLUGIN_NAME "db"
#define PLUGIN_VERSION "2.0.0"
#define FAIL_ON_RELOAD
#include "../counter_plugin.hpp"
