// The interface between the HTTP server and its plugins: one request in, one reply out.
// Plain standard types only, so the interface stays stable whatever HTTP library serves it.
#pragma once
#include <hotreload/plugin.hpp>

#include <map>
#include <string>

struct http_request {
  std::string method;                        ///< "GET", "POST", ...
  std::string path;                          ///< "/counter/increment" (no query)
  std::map<std::string, std::string> query;  ///< decoded query parameters
  std::string body;
};

struct http_reply {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

struct http_handler : hotreload::plugin {
  using interface_type = http_handler;          // names the interface in the ABI tag
  static constexpr unsigned interface_version = 1; // bump on any change of this struct
  /// Serves one request routed to this plugin. May run on any of the server's threads,
  /// concurrently with other requests.
  virtual hotreload::awaitable<http_reply> handle(http_request request) = 0;
};
