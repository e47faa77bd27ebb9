// The test runner: doctest's main and its implementation. First of test_hotreload's sources,
// so that in a unity file it comes before every file that includes doctest.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
