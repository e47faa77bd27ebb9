// A valid shared library without the HOTRELOAD_PLUGIN exports.
extern "C" __attribute__((visibility("default"))) int not_a_plugin_function() { return 1; }
