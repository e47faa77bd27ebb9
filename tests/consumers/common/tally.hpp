// The interface of the consumer projects' host and plugin.
#pragma once
#include <hotreload/plugin.hpp>

#include <string>

struct tally : hotreload::plugin {
  using interface_type = tally;
  static constexpr unsigned interface_version = 1;
  virtual std::string version() const = 0;
  virtual int add() = 0; // one more; the new total
};
