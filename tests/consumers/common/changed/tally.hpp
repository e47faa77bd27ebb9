// tally.hpp as someone changed it without bumping interface_version: a function added in
// the middle, so every later virtual function moves (sizeof is the same). A plugin built
// against it must be refused by a host built against the original.
#pragma once
#include <hotreload/plugin.hpp>

#include <string>

struct tally : hotreload::plugin {
  using interface_type = tally;
  static constexpr unsigned interface_version = 1;
  virtual std::string version() const = 0;
  virtual int reset() { return 0; }
  virtual int add() = 0; // one more; the new total
};
