#ifndef HOTRELOAD_DETAIL_ENGINE_HANDLE_HPP
#define HOTRELOAD_DETAIL_ENGINE_HANDLE_HPP

// The seam between the front end (basic_hot_reloader, a template the user's files instantiate)
// and the engine (detail/engine.hpp: the coroutines that do the work). Every call the front
// end makes goes through this class, declared here without the engine. By default its
// definitions (impl/engine_handle.ipp) are included below and inline; with
// HOTRELOAD_SEPARATE_COMPILATION they are compiled once, in the file that includes
// <hotreload/src.hpp>, and a file that uses a reloader does not compile the engine at all.

#include <hotreload/config.hpp>
#include <hotreload/detail/engine_types.hpp>
#include <hotreload/detail/policies.hpp>
#include <hotreload/detail/result.hpp>
#include <hotreload/error.hpp>
#include <hotreload/events.hpp>
#include <hotreload/options.hpp>
#include <hotreload/plugin_info.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/strand.hpp>

#include <cstddef>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hotreload::detail {

class engine;

class engine_handle {
public:
  /// The engine over `p` (the front end's policies, which outlive it) for an `Interface` of `t`.
  HOTRELOAD_DECL engine_handle(asio::any_io_executor ex, options o, policy_ops& p, interface_traits t);
  engine_handle(const engine_handle&) = delete;
  engine_handle& operator=(const engine_handle&) = delete;
  /// Closes the engine: nothing is delivered or handed out any more (engine::close).
  HOTRELOAD_DECL ~engine_handle();

  HOTRELOAD_DECL const options& opts() const noexcept;
  /// Where the operations below run.
  HOTRELOAD_DECL asio::strand<asio::any_io_executor> strand() const;

  // On the strand.
  HOTRELOAD_DECL awaitable<error_info> start();
  HOTRELOAD_DECL awaitable<error_info> stop();
  HOTRELOAD_DECL awaitable<error_info> reload(std::vector<std::string> names);
  HOTRELOAD_DECL awaitable<result<std::string>> load_file(std::filesystem::path file);

  // From any thread.
  HOTRELOAD_DECL lease_ptr try_get(std::string_view name) const;
  HOTRELOAD_DECL void get(std::string name, waiter done);
  /// What a lease holds: the instance as the interface's pointer, and its version.
  struct contents_t {
    void* iface;
    const plugin_metadata* meta;
  };
  HOTRELOAD_DECL static contents_t contents(const lease_block& l) noexcept;
  HOTRELOAD_DECL error_code set_enabled(std::string_view name, bool on);
  HOTRELOAD_DECL std::vector<plugin_info> infos() const;
  HOTRELOAD_DECL std::optional<plugin_info> info(std::string_view name) const;
  HOTRELOAD_DECL void set_acceptance_check(acceptance_fn f);
  HOTRELOAD_DECL std::size_t subscribe(event_handler h);
  HOTRELOAD_DECL void unsubscribe(std::size_t id);

private:
  std::shared_ptr<engine> e_;
};

} // namespace hotreload::detail

#ifndef HOTRELOAD_SEPARATE_COMPILATION
#include <hotreload/detail/impl/engine_handle.ipp>
#endif

#endif
