// counter 3.0.0 whose static initialiser calls exit(0) (which would end the program).
#define PLUGIN_VERSION "3.0.0"
#define STATIC_INIT_EXITS
#include "../counter_plugin.hpp"
