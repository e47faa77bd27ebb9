// counter 1.0.0 built without -fno-gnu-unique (tests/meson.build gives it only the host's
// flags): g++ marks Asio's inline statics STB_GNU_UNIQUE, so it can never unload.
#define PLUGIN_VERSION "1.0.0"
#include "../counter_plugin.hpp"
