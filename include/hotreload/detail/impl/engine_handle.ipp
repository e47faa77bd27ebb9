#ifndef HOTRELOAD_DETAIL_IMPL_ENGINE_HANDLE_IPP
#define HOTRELOAD_DETAIL_IMPL_ENGINE_HANDLE_IPP

// engine_handle's definitions: inline in every file by default, or compiled once with
// HOTRELOAD_SEPARATE_COMPILATION (<hotreload/src.hpp>).

#include <hotreload/detail/engine.hpp>
#include <hotreload/detail/engine_handle.hpp>

namespace hotreload::detail {

HOTRELOAD_DECL engine_handle::engine_handle(asio::any_io_executor ex, options o, policy_ops& p, interface_traits t)
    : e_(engine::create(std::move(ex), std::move(o), p, t)) {}

HOTRELOAD_DECL engine_handle::~engine_handle() { e_->close(); }

HOTRELOAD_DECL const options& engine_handle::opts() const noexcept { return e_->parts().opts; }

HOTRELOAD_DECL asio::strand<asio::any_io_executor> engine_handle::strand() const { return e_->parts().strand; }

HOTRELOAD_DECL awaitable<error_info> engine_handle::start() { return e_->start(); }

HOTRELOAD_DECL awaitable<error_info> engine_handle::stop() { return e_->stop(); }

HOTRELOAD_DECL awaitable<error_info> engine_handle::reload(std::vector<std::string> names) {
  return e_->reload(std::move(names));
}

HOTRELOAD_DECL awaitable<result<std::string>> engine_handle::load_file(std::filesystem::path file) {
  return e_->load_file(std::move(file));
}

HOTRELOAD_DECL lease_ptr engine_handle::try_get(std::string_view name) const { return e_->parts().reg.try_get(name); }

HOTRELOAD_DECL void engine_handle::get(std::string name, waiter done) { e_->get(std::move(name), std::move(done)); }

HOTRELOAD_DECL engine_handle::contents_t engine_handle::contents(const lease_block& l) noexcept {
  return {l.inst.iface, &l.ver->meta};
}

HOTRELOAD_DECL error_code engine_handle::set_enabled(std::string_view name, bool on) { return e_->set_enabled(name, on); }

HOTRELOAD_DECL std::vector<plugin_info> engine_handle::infos() const { return e_->parts().reg.infos(); }

HOTRELOAD_DECL std::optional<plugin_info> engine_handle::info(std::string_view name) const {
  return e_->parts().reg.info(name);
}

HOTRELOAD_DECL void engine_handle::set_acceptance_check(acceptance_fn f) {
  e_->parts().hooks.set_acceptance_check(std::move(f));
}

HOTRELOAD_DECL std::size_t engine_handle::subscribe(event_handler h) { return e_->parts().hub.subscribe(std::move(h)); }

HOTRELOAD_DECL void engine_handle::unsubscribe(std::size_t id) { e_->parts().hub.unsubscribe(id); }

} // namespace hotreload::detail

#endif
