// The engine of hotreload, compiled once for a program built with
// HOTRELOAD_SEPARATE_COMPILATION (README: "Compile time").
#include <hotreload/src.hpp>
