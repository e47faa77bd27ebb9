// An HTTP/1.1 server (Boost.Beast) whose routes are served by plugins that reload while it
// runs. Requests that arrive during a reload wait for it and are answered by the new version.
//
//   http_server --plugins DIR [--address 127.0.0.1] [--port 0] [--threads 2] [--debounce-ms 50]
//               [--rebuild "BUILD COMMAND" --sources DIR...]
//
// With --rebuild, the server closes the edit-save-serve loop: a change under a --sources
// directory runs the build command (e.g. "ninja -C build"), and the libraries it writes
// into the plugin directory are reloaded; a failed build is logged with the compiler's first
// error lines while the loaded versions serve on.
//
// Routes: GET /hello?name=X (plugin "greeter"), POST /counter/increment and GET /counter
// (plugin "counter"), GET /plugins (the reloader's view), POST /plugins/NAME/reload.
// SIGINT or SIGTERM: stop accepting, tear every plugin down (async_stop), exit 0.
#include <hotreload.hpp>

#include "handler.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/serialize.hpp>

#include <csignal>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace hr = hotreload;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// Which plugin serves which path (the path itself or anything below it).
struct route {
  std::string_view prefix;
  std::string_view plugin;
};
constexpr route routes[] = {{"/hello", "greeter"}, {"/counter", "counter"}};

struct settings {
  std::string address = "127.0.0.1";
  unsigned short port = 0;
  unsigned threads = 2;
  std::string plugins;
  std::chrono::milliseconds debounce{50};
  std::string rebuild;
  std::vector<std::filesystem::path> sources;
};

class server {
public:
  server(asio::io_context& io, const settings& s)
      : io_(io), strand_(asio::make_strand(io)), acceptor_(strand_), signals_(strand_, SIGINT, SIGTERM),
        reloader_(io.get_executor(), hr::options{.plugin_dirs = {s.plugins},
                                                 .debounce = s.debounce,
                                                 .rebuild = {.command = s.rebuild, .sources = s.sources}}),
        endpoint_(asio::ip::make_address(s.address), s.port) {}

  // Loads the plugins, then accepts connections until SIGINT/SIGTERM.
  asio::awaitable<void> run() {
    auto [ec] = co_await reloader_.async_start(use_tuple);
    if (ec) std::cerr << "some plugins did not start (" << ec.message() << "); serving the others\n";
    acceptor_.open(endpoint_.protocol());
    acceptor_.set_option(tcp::acceptor::reuse_address(true));
    acceptor_.bind(endpoint_);
    acceptor_.listen();
    auto local = acceptor_.local_endpoint();
    std::cout << "listening on " << local.address().to_string() << ":" << local.port() << std::endl;
    asio::co_spawn(strand_, shutdown_on_signal(), asio::detached);
    for (;;) {
      auto [aec, socket] = co_await acceptor_.async_accept(asio::make_strand(io_), use_tuple);
      if (aec == asio::error::operation_aborted || !acceptor_.is_open()) break;
      if (!aec) asio::co_spawn(socket.get_executor(), session(std::move(socket)), asio::detached);
    }
  }

private:
  asio::awaitable<void> shutdown_on_signal() {
    auto [ec, signal] = co_await signals_.async_wait(use_tuple);
    if (ec) co_return;
    std::cout << "signal " << signal << ": stopping" << std::endl;
    acceptor_.close();
    auto [sec] = co_await reloader_.async_stop(use_tuple); // teardown every plugin, unload
    if (sec) std::cerr << "stop: " << sec.message() << "\n";
    io_.stop(); // open keep-alive connections are dropped
  }

  asio::awaitable<void> session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      stream.expires_after(60s);
      auto [ec, n] = co_await http::async_read(stream, buffer, req, use_tuple);
      if (ec) break;
      http::response<http::string_body> res = co_await respond(req);
      res.version(req.version());
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
      if (wec || !res.keep_alive()) break;
    }
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  static http::response<http::string_body> reply(http::status status, std::string_view type, std::string body) {
    http::response<http::string_body> res{status, 11};
    res.set(http::field::content_type, type);
    res.body() = std::move(body);
    return res;
  }
  static http::response<http::string_body> reply_json(http::status status, const json::value& v) {
    return reply(status, "application/json", json::serialize(v) + "\n");
  }

  asio::awaitable<http::response<http::string_body>> respond(const http::request<http::string_body>& req) {
    http_request request = parse(req);
    if (request.path == "/plugins" && req.method() == http::verb::get) co_return reply_json(http::status::ok, listing());
    if (request.path.size() > 16 && request.path.starts_with("/plugins/") && request.path.ends_with("/reload")) {
      std::string name = request.path.substr(9, request.path.size() - 9 - 7);
      if (req.method() != http::verb::post) co_return reply(http::status::method_not_allowed, "text/plain", "use POST\n");
      co_return co_await reload(name);
    }
    for (const route& r : routes) {
      std::string_view path = request.path;
      if (path == r.prefix || (path.starts_with(r.prefix) && path[r.prefix.size()] == '/'))
        co_return co_await forward(std::string(r.plugin), std::move(request));
    }
    co_return reply(http::status::not_found, "text/plain", "no route for " + request.path + "\n");
  }

  // Hands the request to the plugin's serving version. During a reload, async_get waits and
  // completes with the new version (or with the old one after a rollback).
  asio::awaitable<http::response<http::string_body>> forward(std::string plugin, http_request request) {
    auto [ec, handler] = co_await reloader_.async_get(plugin, use_tuple);
    if (ec) co_return unavailable(plugin, ec);
    http_reply r;
    try {
      r = co_await handler->handle(std::move(request));
    } catch (const std::exception& e) {
      json::object error{{"plugin", plugin}, {"error", e.what()}};
      co_return reply_json(http::status::internal_server_error, error);
    }
    auto res = reply(static_cast<http::status>(r.status), r.content_type, std::move(r.body));
    res.set("X-Plugin-Version", handler.metadata().version);
    co_return res;
  } // the handle is released here: a reload waits only for requests in progress

  http::response<http::string_body> unavailable(const std::string& plugin, hr::error_code ec) {
    auto info = reloader_.info(plugin);
    std::string message = info && info->last_error ? info->last_error->message : ec.message();
    json::object error{{"plugin", plugin}, {"error", message}};
    return reply_json(http::status::service_unavailable, error);
  }

  asio::awaitable<http::response<http::string_body>> reload(std::string name) {
    if (!reloader_.info(name)) {
      json::object error{{"plugin", name}, {"error", "no such plugin"}};
      co_return reply_json(http::status::not_found, error);
    }
    auto [ec] = co_await reloader_.async_reload_plugin(name, use_tuple);
    auto info = reloader_.info(name);
    json::object out{{"plugin", name}, {"version", info->version}};
    if (!ec) {
      out["outcome"] = "reloaded";
      co_return reply_json(http::status::ok, out);
    }
    out["outcome"] = info->serving ? "rolled_back" : "failed";
    out["error"] = info->last_error ? info->last_error->message : ec.message();
    co_return reply_json(http::status::internal_server_error, out);
  }

  json::array listing() const {
    json::array out;
    for (const hr::plugin_info& i : reloader_.plugins()) {
      json::value last_error = nullptr, loaded_at = nullptr;
      if (i.last_error) last_error = i.last_error->message;
      if (i.serving) loaded_at = iso8601(i.loaded_at);
      out.push_back(json::object{{"name", i.name},
                                 {"version", i.version},
                                 {"enabled", i.enabled},
                                 {"serving", i.serving},
                                 {"loaded_at", loaded_at},
                                 {"reloads", i.reloads},
                                 {"last_error", last_error},
                                 {"state_version", i.state_version}});
    }
    return out;
  }

  static std::string iso8601(std::chrono::system_clock::time_point t) {
    auto secs = std::chrono::system_clock::to_time_t(t);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count() % 1000;
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[40];
    std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms));
    return buf;
  }

  static http_request parse(const http::request<http::string_body>& req) {
    http_request out;
    out.method = std::string(req.method_string());
    std::string_view target = req.target();
    auto q = target.find('?');
    out.path = decode(target.substr(0, q));
    if (q != std::string_view::npos) {
      std::string_view rest = target.substr(q + 1);
      while (!rest.empty()) {
        auto amp = rest.find('&');
        std::string_view pair = rest.substr(0, amp);
        auto eq = pair.find('=');
        if (!pair.empty())
          out.query[decode(pair.substr(0, eq))] = eq == std::string_view::npos ? "" : decode(pair.substr(eq + 1));
        rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
      }
    }
    out.body = req.body();
    return out;
  }

  // Percent-decoding, '+' as space.
  static std::string decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '+') {
        out += ' ';
      } else if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
                 std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
        out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
        i += 2;
      } else {
        out += s[i];
      }
    }
    return out;
  }

  asio::io_context& io_;
  asio::strand<asio::io_context::executor_type> strand_; // acceptor and signals
  tcp::acceptor acceptor_;
  asio::signal_set signals_;
  // rebuild_watcher: inotify on the plugins, and, given a build command, on the sources.
  hr::basic_hot_reloader<http_handler, hr::rebuild_watcher<>> reloader_;
  tcp::endpoint endpoint_;
};

static int usage(const char* why) {
  std::cerr << "http_server: " << why
            << "\nusage: http_server --plugins DIR [--address 127.0.0.1] [--port 0] [--threads 2] [--debounce-ms 50]\n"
               "                   [--rebuild \"BUILD COMMAND\" --sources DIR...]\n";
  return 2;
}

int main(int argc, char** argv) {
  settings s;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string_view arg = argv[i];
      if (i + 1 >= argc) return usage(("missing value after " + std::string(arg)).c_str());
      std::string value = argv[++i];
      if (arg == "--plugins") s.plugins = value;
      else if (arg == "--address") s.address = value;
      else if (arg == "--port") s.port = static_cast<unsigned short>(std::stoul(value));
      else if (arg == "--threads") s.threads = static_cast<unsigned>(std::stoul(value));
      else if (arg == "--debounce-ms") s.debounce = std::chrono::milliseconds(std::stoul(value));
      else if (arg == "--rebuild") s.rebuild = value;
      else if (arg == "--sources") s.sources.push_back(value);
      else return usage(("unknown option " + std::string(arg)).c_str());
    }
  } catch (const std::exception&) {
    return usage("bad number");
  }
  if (s.plugins.empty()) return usage("--plugins DIR is required");
  if (s.threads == 0) return usage("--threads must be at least 1");
  if (s.rebuild.empty() != s.sources.empty()) return usage("--rebuild and --sources go together");

  asio::io_context io(static_cast<int>(s.threads));
  int status = 0;
  {
    server srv(io, s);
    asio::co_spawn(io, srv.run(), [&](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        std::cerr << "http_server: " << x.what() << "\n";
      }
      status = 1;
      io.stop();
    });
    std::vector<std::jthread> threads;
    for (unsigned i = 1; i < s.threads; ++i) threads.emplace_back([&] { io.run(); });
    io.run();
  } // threads joined, then the reloader is destroyed before the io_context
  return status;
}
