// A library that lacks the hotreload_create export.
#define META_SLOT
#define NO_CREATE_EXPORT
#include "../counter_plugin.hpp"
