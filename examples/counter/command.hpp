// The interface of the counter example's plugins: a plugin executes text commands.
#pragma once
#include <hotreload/plugin.hpp>

#include <string>
#include <string_view>

struct command_plugin : hotreload::plugin {
  using interface_type = command_plugin; // names the interface in the ABI tag
  /// Executes one command (`increment`, `show`, ...) and returns the line to print.
  virtual std::string execute(std::string_view command) = 0;
};
