// counter 1.0.0 whose metadata sits in a 1.2 MB slot that tests patch in copies of the file.
#define PLUGIN_VERSION "1.0.0"
#define META_SLOT
#include "../counter_plugin.hpp"
