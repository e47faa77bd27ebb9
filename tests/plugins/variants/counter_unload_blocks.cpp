// counter 1.0.0 whose static destructor (run by dlclose) blocks its thread at the journal's
// gate until the test opens it: an unmapping that takes as long as the test likes.
#define STATIC_DTOR_BLOCKS
#include "../counter_plugin.hpp"
