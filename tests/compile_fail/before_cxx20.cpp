// expect: hotreload needs C++20
// std: c++17
// Without C++20, the first error names the requirement and the fix (not 170 errors later).
#include <hotreload.hpp>
