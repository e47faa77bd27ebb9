#ifndef HOTRELOAD_WATCHER_REBUILD_WATCHER_HPP
#define HOTRELOAD_WATCHER_REBUILD_WATCHER_HPP

#include <hotreload/config.hpp>
#include <hotreload/detail/linux/child_process.hpp>
#include <hotreload/detail/linux/files.hpp>
#include <hotreload/detail/policies.hpp>
#include <hotreload/detail/sync.hpp>
#include <hotreload/options.hpp>
#include <hotreload/watcher/default_watcher.hpp>
#include <hotreload/watcher/watcher.hpp>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json/parse.hpp>

#include <algorithm>
#include <cctype>
#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fnmatch.h>

namespace hotreload {

namespace detail {

/// The build half of rebuild_watcher, on a strand of its own: source changes (debounced)
/// start the build command; at most one build runs; saves during a build lead to exactly one
/// more build after it. Library changes seen during a build are held, and delivered once it
/// has ended, as settled (the reloader acts at once), with every library the build wrote.
class build_runner : public std::enable_shared_from_this<build_runner> {
public:
  build_runner(asio::any_io_executor ex, const options& o, std::vector<std::filesystem::path> library_dirs,
               change_handler deliver, watch_reporter report)
      : strand_(asio::make_strand(std::move(ex))), cfg_(o.rebuild),
        globs_(cfg_.globs.empty() ? rebuild_options::default_globs() : cfg_.globs), suffix_(o.library_suffix),
        library_dirs_(std::move(library_dirs)), library_roots_(absolutes(library_dirs_)), deliver_(std::move(deliver)),
        report_(std::move(report)),
        debounce_(strand_), kill_(strand_) {}

  /// The directories to watch for source changes: options.rebuild.sources, and those of the
  /// files compile_commands.json lists (outside build trees), without ones inside others.
  result<std::vector<std::filesystem::path>> source_roots() {
    result<std::vector<std::filesystem::path>> out;
    std::vector<std::filesystem::path> dirs;
    for (auto& s : cfg_.sources) dirs.push_back(absolute(s));
    if (!cfg_.compile_commands.empty()) {
      auto listed = compile_commands_dirs(out.error);
      if (out.error) return out;
      dirs.insert(dirs.end(), listed.begin(), listed.end());
    }
    if (cfg_.command.empty() && !dirs.empty())
      out.error = fail(errc::bad_rebuild_setup, {},
                       "rebuild_watcher: sources to watch but no build command; set options.rebuild.command, e.g. "
                       "\"ninja -C build\" or \"cmake --build build --target greeter\"");
    else if (!cfg_.command.empty() && dirs.empty())
      out.error = fail(errc::bad_rebuild_setup, {},
                       "rebuild_watcher: no sources to watch; set options.rebuild.sources (source directories) or "
                       "options.rebuild.compile_commands (the build's compile_commands.json)");
    std::sort(dirs.begin(), dirs.end());
    dirs.erase(std::unique(dirs.begin(), dirs.end()), dirs.end());
    for (auto& d : dirs)
      if (std::none_of(out.value.begin(), out.value.end(), [&](auto& kept) { return inside(d, kept); }))
        out.value.push_back(d);
    roots_ = out.value;
    return out;
  }

  /// What the source watcher reports (from any thread).
  void on_sources(std::vector<file_change> changes) {
    asio::post(strand_, [self = shared_from_this(), changes = std::move(changes)] {
      bool build = false;
      for (auto& c : changes)
        if (self->starts_build(c)) {
          self->report_.log(log_level::debug, "Source changed: " + c.path.string());
          build = true;
        }
      if (build) self->schedule();
    });
  }

  /// What the library watcher reports (from any thread): passed on, or held during a build.
  void on_libraries(std::vector<file_change> changes) {
    asio::post(strand_, [self = shared_from_this(), changes = std::move(changes)]() mutable {
      if (self->closed_) return;
      if (!self->building_) return self->deliver_(std::move(changes));
      self->held_.insert(self->held_.end(), changes.begin(), changes.end());
    });
  }

  /// Starts a build now (or one more after the one under way).
  void request() {
    asio::post(strand_, [self = shared_from_this()] { self->fire(); });
  }

  /// No more builds; the one under way is stopped (SIGTERM to its process group, SIGKILL
  /// 2 s later) and reported as failed.
  void close() {
    asio::post(strand_, [self = shared_from_this()] {
      self->closed_ = true;
      self->debounce_.cancel();
      self->held_.clear();
      self->terminate("the reloader stopped");
    });
  }

  std::size_t builds() const noexcept { return builds_; }

private:
  // Absolute, normal, without a trailing separator ("src/" is "src").
  static std::filesystem::path absolute(const std::filesystem::path& p) {
    std::error_code ec;
    auto a = std::filesystem::absolute(p, ec);
    auto n = (ec ? p : a).lexically_normal();
    return n.has_filename() ? n : n.parent_path();
  }
  static std::vector<std::filesystem::path> absolutes(const std::vector<std::filesystem::path>& dirs) {
    std::vector<std::filesystem::path> out;
    for (auto& d : dirs) out.push_back(absolute(d));
    return out;
  }
  static bool inside(const std::filesystem::path& p, const std::filesystem::path& dir) {
    auto rel = p.lexically_relative(dir);
    return !rel.empty() && *rel.begin() != "..";
  }

  // The directories of the files compile_commands.json lists.
  std::vector<std::filesystem::path> compile_commands_dirs(error_info& err) {
    std::vector<std::filesystem::path> dirs;
    std::ifstream in(cfg_.compile_commands);
    std::stringstream text;
    text << in.rdbuf();
    boost::system::error_code ec;
    auto doc = in ? boost::json::parse(text.str(), ec) : boost::json::value();
    if (!in || ec || !doc.is_array()) {
      err = fail(errc::bad_rebuild_setup, {},
                 "rebuild_watcher: cannot read " + cfg_.compile_commands.string() + " (" +
                     (!in ? std::string("no such file, or unreadable") : ec ? ec.message() : "not a JSON array") +
                     "); configure the build first (meson setup, or cmake -DCMAKE_EXPORT_COMPILE_COMMANDS=ON), or "
                     "fix options.rebuild.compile_commands");
      return dirs;
    }
    auto build_dir = absolute(cfg_.compile_commands.parent_path());
    for (auto& v : doc.as_array()) {
      auto* o = v.if_object();
      auto* f = o ? o->if_contains("file") : nullptr;
      if (!f || !f->is_string()) continue;
      std::filesystem::path file(std::string(f->get_string()));
      if (auto* d = o->if_contains("directory"); d && d->is_string() && file.is_relative())
        file = std::filesystem::path(std::string(d->get_string())) / file;
      auto dir = absolute(file).parent_path();
      if (!inside(dir, build_dir) && dir != build_dir) dirs.push_back(dir); // generated sources are the build's
    }
    return dirs;
  }

  // Whether a change under the source roots is one a build should follow.
  bool starts_build(const file_change& c) const {
    if (closed_) return false;
    if (c.kind == change_kind::rescan) return true;
    auto name = c.path.filename().string();
    if (name.empty() || name[0] == '.') return false;
    if (std::none_of(globs_.begin(), globs_.end(),
                     [&](const std::string& g) { return ::fnmatch(g.c_str(), name.c_str(), 0) == 0; }))
      return false;
    for (auto& d : library_roots_)
      if (inside(c.path, d)) return false;
    return !in_build_tree(c.path);
  }

  // Inside a build tree: a directory below a root holds build.ninja, CMakeCache.txt or
  // meson-private (what the build writes must not start another build).
  bool in_build_tree(const std::filesystem::path& file) const {
    auto p = absolute(file);
    for (auto d = p.parent_path(); !d.empty() && d != d.root_path(); d = d.parent_path()) {
      if (std::find(roots_.begin(), roots_.end(), d) != roots_.end()) return false;
      std::error_code ec;
      for (const char* marker : {"build.ninja", "CMakeCache.txt", "meson-private"})
        if (std::filesystem::exists(d / marker, ec)) return true;
    }
    return false;
  }

  void schedule() {
    if (closed_) return;
    debounce_.expires_after(cfg_.debounce);
    debounce_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
      if (!ec) self->fire();
    });
  }

  void fire() {
    if (closed_) return;
    if (building_) {
      report_.log(log_level::debug, "A build is under way: one more build follows it");
      again_ = true;
      return;
    }
    building_ = true;
    asio::co_spawn(strand_, builds_loop(shared_from_this()), asio::detached);
  }

  HOTRELOAD_DECL static awaitable<void> builds_loop(std::shared_ptr<build_runner> self);

  // One run of the build command, reported; then the libraries it wrote go to the reloader.
  HOTRELOAD_DECL awaitable<void> build();

  HOTRELOAD_DECL static awaitable<void> read(std::shared_ptr<child_process> child, std::shared_ptr<std::string> output,
                                             std::shared_ptr<async_event> ended);

  // Stops the build under way: SIGTERM to its process group (ninja and make stop their
  // compilers and delete half-written outputs), SIGKILL after 2 s.
  void terminate(std::string why) {
    if (!child_) return;
    stop_reason_ = std::move(why);
    child_->signal_group(SIGTERM);
    kill_.expires_after(std::chrono::seconds(2));
    kill_.async_wait([weak = weak_from_this()](boost::system::error_code ec) {
      if (auto self = weak.lock(); self && !ec && self->child_) self->child_->signal_group(SIGKILL);
    });
  }

  void finished(const std::string& spawn_error, int status, const std::string& output, clock::duration took) {
    auto secs = [&] {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2f s", std::chrono::duration<double>(took).count());
      return std::string(buf);
    }();
    auto all = lines(output);
    for (auto& line : all) report_.log(log_level::debug, "build: " + line);
    bool ok = spawn_error.empty() && stop_reason_.empty() && status == 0;
    if (ok) {
      report_.log(log_level::info, "Build succeeded in " + secs + ": " + cfg_.command);
      report_.emit(reload_event{event_kind::build_succeeded, {}, {}, {}, reload_step::none, took, {}, cfg_.command});
      return;
    }
    std::string why = !spawn_error.empty()  ? "could not be run: " + spawn_error
                      : !stop_reason_.empty() ? "was stopped: " + stop_reason_
                                              : "failed with " + child_process::describe_status(status);
    auto first = first_errors(all, cfg_.error_lines);
    auto err = fail(errc::build_failed, {},
                    "Build " + why + " after " + secs + " (" + cfg_.command +
                        "); the plugins keep serving their loaded versions" +
                        (stop_reason_.empty() && spawn_error.empty() ? "; fix the error and save again" : ""));
    report_.log(log_level::error, err.message);
    std::string detail;
    for (auto& line : first) {
      report_.log(log_level::error, "  " + line);
      detail += line + "\n";
    }
    report_.emit(reload_event{event_kind::build_failed, {}, {}, {}, reload_step::none, took, err, detail});
  }

  using stamps = std::map<std::filesystem::path, std::optional<file_stamp>>;

  // Every library in the plugin directories, with what identifies its contents.
  stamps libraries() const {
    stamps out;
    for (auto& dir : library_dirs_)
      for_each_file(dir, [&](const std::filesystem::path& f) {
        auto name = f.filename().string();
        if (name.size() >= suffix_.size() && name.compare(name.size() - suffix_.size(), suffix_.size(), suffix_) == 0)
          out[f] = stamp_of(f);
      });
    return out;
  }

  // The libraries the build wrote (those that changed or appeared since it started, and the
  // changes seen meanwhile), to the reloader as settled.
  void hand_over(const stamps& before) {
    if (closed_) return;
    std::map<std::filesystem::path, change_kind> files;
    for (auto& c : std::exchange(held_, {})) files[c.path] = c.kind;
    for (auto& [path, stamp] : libraries())
      if (auto was = before.find(path); was == before.end() || was->second != stamp)
        files.try_emplace(path, change_kind::modified);
    std::vector<file_change> out;
    for (auto& [path, kind] : files) out.push_back({kind, path, true});
    if (!out.empty()) deliver_(std::move(out));
  }

  // The output's lines, without colours (terminal escape sequences: ESC [ ... letter).
  static std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
      std::string plain;
      for (std::size_t i = 0; i < line.size(); ++i) {
        if (line[i] == '\x1b' && i + 1 < line.size() && line[i + 1] == '[') {
          i += 2;
          while (i < line.size() && !std::isalpha(static_cast<unsigned char>(line[i]))) ++i;
          continue;
        }
        if (line[i] != '\r') plain.push_back(line[i]);
      }
      if (!plain.empty()) out.push_back(std::move(plain));
    }
    return out;
  }

  // The compiler's first error and the lines after it (up to `n`); without an error line,
  // the last `n` lines.
  static std::vector<std::string> first_errors(const std::vector<std::string>& all, std::size_t n) {
    auto is_error = [](const std::string& l) {
      return l.find("error:") != std::string::npos || l.find("Error:") != std::string::npos ||
             l.find("ERROR:") != std::string::npos || l.find("undefined reference") != std::string::npos ||
             l.find("FAILED:") != std::string::npos;
    };
    // "FAILED: target" (ninja) comes first, then the command line; start at the first
    // diagnostic proper if there is one.
    auto first = std::find_if(all.begin(), all.end(), [&](auto& l) { return is_error(l) && l.find("FAILED:") != 0; });
    if (first == all.end()) first = std::find_if(all.begin(), all.end(), is_error);
    if (first == all.end()) first = all.size() > n ? all.end() - static_cast<std::ptrdiff_t>(n) : all.begin();
    auto last = static_cast<std::size_t>(all.end() - first) > n ? first + static_cast<std::ptrdiff_t>(n) : all.end();
    return {first, last};
  }

  static constexpr std::size_t output_limit = 256 * 1024;

  strand_t strand_;
  const rebuild_options cfg_;
  const std::vector<std::string> globs_;
  const std::string suffix_;
  const std::vector<std::filesystem::path> library_dirs_;  // as the reloader gave them (its paths)
  const std::vector<std::filesystem::path> library_roots_; // the same, absolute (to filter sources)
  change_handler deliver_;
  watch_reporter report_;
  asio::steady_timer debounce_;
  asio::steady_timer kill_;
  std::vector<std::filesystem::path> roots_;
  std::vector<file_change> held_;
  std::shared_ptr<child_process> child_;
  std::string stop_reason_;
  bool closed_ = false, building_ = false, again_ = false;
  std::atomic<std::size_t> builds_{0};
};

} // namespace detail

/// A Watcher that closes the edit-save-serve loop: it watches source trees, runs the
/// build command when a source changes (options.rebuild), and reloads what the build writes
/// into the plugin directories. It is a decorator: the libraries are watched by `Inner` (the
/// platform's default watcher unless said otherwise), and so are the sources.
///
/// The build is a child process in its own process group (the whole build is stopped at
/// once), its output goes to the log (debug, and the first error lines on failure), and it
/// reports the events build_started, build_succeeded and build_failed. A failed build leaves
/// the serving versions untouched. At most one build runs; saves during a build lead to
/// exactly one more build after it. Stopping the watcher (async_stop) stops the build.
/// Without options.rebuild.command (and sources), it is `Inner` alone: one reloader type can
/// serve a development set-up that rebuilds and a production one that does not.
template <class Inner = default_watcher>
class rebuild_watcher {
public:
  explicit rebuild_watcher(asio::any_io_executor ex, const options& o = {})
      : ex_(ex), opts_(o), libraries_(detail::make_policy<Inner>(ex, o)), sources_(detail::make_policy<Inner>(ex, o)) {}
  rebuild_watcher(const rebuild_watcher&) = delete;
  rebuild_watcher& operator=(const rebuild_watcher&) = delete;
  ~rebuild_watcher() { stop(); }

  error_info start(const std::vector<std::filesystem::path>& dirs, change_handler on_change, watch_reporter report) {
    stop();
    auto runner = std::make_shared<detail::build_runner>(ex_, opts_, dirs, on_change, std::move(report));
    auto roots = runner->source_roots();
    if (roots.error) return roots.error;
    if (opts_.rebuild.command.empty()) return libraries_.start(dirs, std::move(on_change)); // no build: Inner alone
    if (auto err = libraries_.start(dirs, [runner](std::vector<file_change> c) { runner->on_libraries(std::move(c)); }))
      return err;
    if (auto err = sources_.start(roots.value, [runner](std::vector<file_change> c) { runner->on_sources(std::move(c)); })) {
      libraries_.stop();
      return err;
    }
    runner_ = std::move(runner);
    sources_watched_ = std::move(roots.value);
    return {};
  }
  /// Without a reloader's reporter: log lines go to options.sink, events nowhere.
  error_info start(const std::vector<std::filesystem::path>& dirs, change_handler on_change) {
    watch_reporter r;
    r.log = [log = logger(opts_.verbosity, opts_.sink)](log_level l, std::string_view m) { log.log(l, {}, m); };
    return start(dirs, std::move(on_change), std::move(r));
  }

  void stop() {
    libraries_.stop();
    sources_.stop();
    if (auto r = std::exchange(runner_, nullptr)) r->close();
  }

  /// Runs the build now, as a source change would (say, from a key the developer pressed).
  void request_build() {
    if (runner_) runner_->request();
  }

  /// Builds started since start().
  std::size_t builds() const noexcept { return runner_ ? runner_->builds() : 0; }
  /// The source directories watched (after start).
  const std::vector<std::filesystem::path>& sources() const noexcept { return sources_watched_; }
  Inner& library_watcher() noexcept { return libraries_; }
  Inner& source_watcher() noexcept { return sources_; }

private:
  asio::any_io_executor ex_;
  options opts_;
  Inner libraries_;
  Inner sources_;
  std::shared_ptr<detail::build_runner> runner_;
  std::vector<std::filesystem::path> sources_watched_;
};

} // namespace hotreload

#ifndef HOTRELOAD_SEPARATE_COMPILATION
#include <hotreload/watcher/impl/rebuild_watcher.ipp>
#endif

#endif
