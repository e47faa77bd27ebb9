// counter 1.0.0, built optimised (-O2, see tests/meson.build): accepted like the -O0 build.
#define PLUGIN_VERSION "1.0.0"
#include "../counter_plugin.hpp"
