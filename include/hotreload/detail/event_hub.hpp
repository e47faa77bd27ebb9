#ifndef HOTRELOAD_DETAIL_EVENT_HUB_HPP
#define HOTRELOAD_DETAIL_EVENT_HUB_HPP

#include <hotreload/detail/sync.hpp>
#include <hotreload/events.hpp>
#include <hotreload/log.hpp>
#include <hotreload/metadata.hpp>

#include <cstdio>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace hotreload::detail {

/// Where the reloader reports: the log, the event subscribers, and the count of versions not
/// yet unmapped (async_stop waits for it to drain). Subscribing is thread-safe; emitting and
/// the version count are strand-only.
class event_hub {
public:
  explicit event_hub(logger l) : log_(std::move(l)) {}

  const logger& get_logger() const noexcept { return log_; }
  bool debug_on() const { return log_.enabled(log_level::debug); }
  void log(log_level l, std::string_view plugin, const std::string& m) const { log_.log(l, plugin, m); }

  std::size_t subscribe(event_handler h) {
    std::lock_guard lk(mu_);
    auto next = std::make_shared<handler_list>(*handlers_);
    next->emplace_back(++next_id_, std::move(h));
    handlers_ = std::move(next);
    return next_id_;
  }
  void unsubscribe(std::size_t id) {
    std::lock_guard lk(mu_);
    auto next = std::make_shared<handler_list>(*handlers_);
    std::erase_if(*next, [id](auto& p) { return p.first == id; });
    handlers_ = std::move(next);
  }
  /// No event is delivered any more (the reloader is being destroyed).
  void close() {
    std::lock_guard lk(mu_);
    handlers_ = std::make_shared<handler_list>();
  }

  void emit(const reload_event& ev) const {
    for (auto& [id, h] : *subscribers()) h(ev);
  }
  /// An event about `plugin`, between two versions (either may be null); the error, if any,
  /// names the plugin.
  void emit(event_kind k, const std::string& plugin, const plugin_metadata* old_v, const plugin_metadata* new_v,
            clock::duration d = {}, error_info err = {}, reload_step step = reload_step::none) const {
    auto subscribers = this->subscribers();
    if (subscribers->empty()) return;
    if (err.code) err.plugin = plugin;
    reload_event ev{k, plugin, old_v ? old_v->version : std::string(), new_v ? new_v->version : std::string(),
                    step, d, std::move(err)};
    for (auto& [id, h] : *subscribers) h(ev);
  }
  /// A step of a reload finished (at `at`): a debug line and a reload_step event.
  void step(const std::string& plugin, reload_step s, const plugin_metadata* old_v, const plugin_metadata* new_v,
            clock::time_point since, std::string_view what, clock::time_point at = clock::now()) const {
    if (debug_on()) log(log_level::debug, plugin, std::string(what) + " for plugin: " + plugin);
    emit(event_kind::reload_step, plugin, old_v, new_v, at - since, {}, s);
  }

  void version_mapped() { ++live_versions_; }
  /// A version's last reference went; `pinned_by` says why it may still be mapped, if it is.
  void version_released(const std::string& name, const std::string& ver, const std::string* pinned_by) {
    if (pinned_by)
      log(log_level::warning, name,
          "Library of plugin " + name + " " + ver + " stayed mapped after its release (pinned); likely causes: " +
              *pinned_by);
    else if (debug_on())
      log(log_level::debug, name, "Unloaded library of plugin: " + name + " " + ver);
    emit(reload_event{pinned_by ? event_kind::pinned : event_kind::unloaded, name, ver, {}, reload_step::none, {}, {}});
    --live_versions_;
    settle();
  }
  /// Plugin code was abandoned (+n) or returned (-n): an abandoned call keeps the n versions
  /// its job holds (its own, and the one whose teardown it followed) mapped for as long as it
  /// runs, so drain() does not wait for those.
  void abandoned(int delta) {
    abandoned_calls_ += delta;
    settle();
  }
  /// Waits until every version is unmapped but those abandoned calls hold, or `deadline`; the
  /// number still mapped.
  awaitable<std::size_t> drain(clock::time_point deadline) {
    if (live_versions_ > abandoned_calls_) {
      drained_ = async_event();
      co_await drained_.wait_until(deadline);
    }
    co_return live_versions_;
  }

private:
  using handler_list = std::vector<std::pair<std::size_t, event_handler>>;
  std::shared_ptr<const handler_list> subscribers() const {
    std::lock_guard lk(mu_);
    return handlers_;
  }

  logger log_;
  mutable std::mutex mu_;
  std::shared_ptr<const handler_list> handlers_ = std::make_shared<handler_list>(); // copied on write
  std::size_t next_id_ = 0;
  void settle() {
    if (live_versions_ <= abandoned_calls_) drained_.set();
  }

  std::size_t live_versions_ = 0; // strand only
  std::size_t abandoned_calls_ = 0; // strand only
  async_event drained_;           // strand only
};

/// "1.23 ms", for log lines.
inline std::string ms(clock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f ms", std::chrono::duration<double, std::milli>(d).count());
  return buf;
}

} // namespace hotreload::detail

#endif
