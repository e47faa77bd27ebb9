// A library that lacks the hotreload_metadata export.
#define META_SLOT
#define NO_METADATA_EXPORT
#include "../counter_plugin.hpp"
