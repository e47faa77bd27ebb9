// db 2.0.0.
#define PLUGIN_NAME "db"
#define PLUGIN_VERSION "2.0.0"
#include "../counter_plugin.hpp"
