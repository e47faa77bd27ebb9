#ifndef HOTRELOAD_LOG_HPP
#define HOTRELOAD_LOG_HPP

#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace hotreload {

enum class log_level { debug, info, warning, error, off };

inline std::string_view to_string(log_level l) noexcept {
  switch (l) {
  case log_level::debug: return "DEBUG";
  case log_level::info: return "INFO";
  case log_level::warning: return "WARNING";
  case log_level::error: return "ERROR";
  case log_level::off: return "OFF";
  }
  return "?";
}

/// One log line: its level, the plugin it concerns (may be empty) and the text.
struct log_record {
  log_level level;
  std::string_view plugin;
  std::string_view message;
};

/// Where log lines go. Called from any thread (the io_context's, and the reloader's own
/// threads where plugin code runs); must be thread-safe.
using log_sink = std::function<void(const log_record&)>;

/// The default sink: `[INFO] message` lines on stderr, one write per line.
inline void stderr_sink(const log_record& r) {
  std::string line;
  line.reserve(r.message.size() + 12);
  line.append("[").append(to_string(r.level)).append("] ").append(r.message).push_back('\n');
  std::fwrite(line.data(), 1, line.size(), stderr);
}

/// A level filter in front of a sink, shared by the reloader and every plugin_context.
/// It lives in the host, so plugins may keep a copy for as long as they like.
class logger {
public:
  logger() = default;
  logger(log_level level, log_sink sink)
      : impl_(std::make_shared<impl>(impl{level, sink ? std::move(sink) : log_sink(stderr_sink)})) {}

  bool enabled(log_level l) const noexcept { return impl_ && l >= impl_->level && l != log_level::off; }
  /// Control characters (a newline in a file name, say) reach the sink escaped, so that
  /// nothing logged can forge a log line.
  void log(log_level l, std::string_view plugin, std::string_view message) const {
    if (!enabled(l)) return;
    if (!has_control(plugin) && !has_control(message)) return impl_->sink(log_record{l, plugin, message});
    auto p = escape_controls(plugin), m = escape_controls(message);
    impl_->sink(log_record{l, p, m});
  }

  /// `s` with each control character written as `\n`, `\r`, `\t` or `\xNN`.
  static std::string escape_controls(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 8);
    for (char c : s) {
      auto u = static_cast<unsigned char>(c);
      if (u >= 0x20 && u != 0x7f) out.push_back(c);
      else if (c == '\n') out += "\\n";
      else if (c == '\r') out += "\\r";
      else if (c == '\t') out += "\\t";
      else {
        const char* hex = "0123456789abcdef";
        out += "\\x";
        out.push_back(hex[u >> 4]);
        out.push_back(hex[u & 15]);
      }
    }
    return out;
  }

private:
  static bool has_control(std::string_view s) noexcept {
    for (char c : s)
      if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return true;
    return false;
  }
  struct impl {
    log_level level;
    log_sink sink;
  };
  std::shared_ptr<const impl> impl_;
};

/// A logger bound to one plugin's name: what plugin_context hands to plugins.
class plugin_logger {
public:
  plugin_logger(logger l, std::string plugin) : logger_(std::move(l)), plugin_(std::move(plugin)) {}
  void debug(std::string_view m) const { logger_.log(log_level::debug, plugin_, m); }
  void info(std::string_view m) const { logger_.log(log_level::info, plugin_, m); }
  void warning(std::string_view m) const { logger_.log(log_level::warning, plugin_, m); }
  void error(std::string_view m) const { logger_.log(log_level::error, plugin_, m); }

private:
  logger logger_;
  std::string plugin_;
};

} // namespace hotreload

#endif
