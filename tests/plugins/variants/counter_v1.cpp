// counter 1.0.0: the plain plugin most tests load first.
#define PLUGIN_VERSION "1.0.0"
#include "../counter_plugin.hpp"
