// counter 1.0.0 whose increment() touches a thread_local std::string: once called from a
// thread that lives on, the library cannot unload (it must be reported pinned).
#define PLUGIN_VERSION "1.0.0"
#define THREAD_LOCAL_STATE
#include "../counter_plugin.hpp"
