// The interface of the pool example's plugin: echo a line through a pool of TCP connections.
#pragma once
#include <hotreload/plugin.hpp>

#include <cstddef>
#include <string>

struct echo_pool : hotreload::plugin {
  using interface_type = echo_pool; // names the interface in the ABI tag
  /// Sends `line` through one of the pool's connections and returns the echo.
  virtual hotreload::awaitable<std::string> echo(std::string line) = 0;
  /// Connections currently open.
  virtual std::size_t open_connections() const = 0;
};
