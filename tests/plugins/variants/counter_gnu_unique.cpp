// counter 1.0.0 built without -fno-gnu-unique (tests/meson.build gives it only the host's
// flags): g++ marks inline statics STB_GNU_UNIQUE, so it can never unload.
#define PLUGIN_VERSION "1.0.0"
#include "../counter_plugin.hpp"

// One of its own, which no host defines. Asio's and Boost.JSON's inline statics are marked
// so too, but where the host defines one already the plugin binds to the host's copy, and
// that pins nothing: whether those pinned this plugin depended on what the test program
// happened to instantiate.
inline int& loads_of_this_plugin() {
  static int n = 0;
  return n;
}
namespace {
const int load_number = ++loads_of_this_plugin();
} // namespace
