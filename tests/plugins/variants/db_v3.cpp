// db 3.0.0 (tasks_db_lt3 refuses it).
#define PLUGIN_NAME "db"
#define PLUGIN_VERSION "3.0.0"
#include "../counter_plugin.hpp"
