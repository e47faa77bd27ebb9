// A C++ library of the plugin's own (libcounter_dep.so), built with the compiler's defaults:
// with g++ its inline statics are STB_GNU_UNIQUE symbols. The plugin that links it has a copy
// of one of them (shared_count) and not of the other (dep_count).
#ifndef HOTRELOAD_TESTS_COUNTER_DEP_HPP
#define HOTRELOAD_TESTS_COUNTER_DEP_HPP

inline int& shared_count() {
  static int n = 0;
  return n;
}
inline int& dep_count() {
  static int n = 0;
  return n;
}
int counter_dep_bump();

#endif
