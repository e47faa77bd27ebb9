// counter 3.0.0 whose static initialiser throws (std::terminate when loaded).
#define PLUGIN_VERSION "3.0.0"
#define STATIC_INIT_THROWS
#include "../counter_plugin.hpp"
