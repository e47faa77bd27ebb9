// counter 3.0.0 that calls a function no library defines, from increment() (not while loading).
#define PLUGIN_VERSION "3.0.0"
#define CALLS_UNDEFINED_LATER
#include "../counter_plugin.hpp"
