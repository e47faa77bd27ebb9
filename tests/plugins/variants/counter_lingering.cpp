// counter 1.0.0 whose teardown leaves a wait pending on the program's io_context, whose last
// executor copy goes on running plugin code after it is released: when the wait completes, the
// version's last reference goes inside this library's code.
#define TEARDOWN_LEAVES_LINGERING_OP
#include "../counter_plugin.hpp"
