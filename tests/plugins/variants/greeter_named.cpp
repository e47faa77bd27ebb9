// A plugin named "other" (a second plugin next to counter, or a renamed one).
#define PLUGIN_VERSION "1.0.0"
#define PLUGIN_NAME "other"
#include "../counter_plugin.hpp"
