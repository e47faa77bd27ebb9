// counter 3.0.0 whose static initialiser calls a function that no library defines.
#define PLUGIN_VERSION "3.0.0"
#define CALLS_UNDEFINED_AT_INIT
#include "../counter_plugin.hpp"
