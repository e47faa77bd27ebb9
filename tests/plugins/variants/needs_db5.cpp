// picky, which requires db >=5 (no db is that new).
#define PLUGIN_NAME "picky"
#define DEP1 "db"
#define DEP1_REQ ">=5"
#include "../counter_plugin.hpp"
