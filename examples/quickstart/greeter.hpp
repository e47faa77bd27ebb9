// The interface the host and its greeter plugins share.
#pragma once
#include <hotreload/plugin.hpp>

#include <string>
#include <string_view>

struct greeter : hotreload::plugin {
  using interface_type = greeter; // names the interface in the plugin's ABI tag
  virtual std::string greet(std::string_view name) = 0;
};
