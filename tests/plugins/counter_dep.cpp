#include "counter_dep.hpp"

int counter_dep_bump() { return ++shared_count() + ++dep_count(); }
