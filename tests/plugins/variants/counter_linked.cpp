// counter 1.0.0 linked to a library of its own (libcounter_dep.so), which it finds through
// $ORIGIN/../lib in its run path, and whose code it calls while loading.
#define LINKS_COUNTER_DEP
#include "../counter_plugin.hpp"
