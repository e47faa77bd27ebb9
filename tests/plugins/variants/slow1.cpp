// slow1: every lifecycle hook waits 50 ms on an Asio timer (async work, not blocking).
#define PLUGIN_NAME "slow1"
#define HOOK_DELAY_MS 50
#include "../counter_plugin.hpp"
