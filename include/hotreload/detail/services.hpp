#ifndef HOTRELOAD_DETAIL_SERVICES_HPP
#define HOTRELOAD_DETAIL_SERVICES_HPP

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/udp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/system_timer.hpp>

namespace hotreload::detail {

/// Registers Asio's common services on the execution context from host code. A service
/// that a plugin happens to create first has its vtable in the plugin; once the plugin is
/// unloaded, destroying the io_context would call into unmapped code. Services are found
/// by type (type_info names), so a plugin later finds and uses these host-made ones.
template <class Executor>
void preload_services(const Executor& ex) {
  namespace asio = boost::asio;
  asio::steady_timer steady(ex);
  asio::system_timer system(ex);
  asio::ip::tcp::socket tcp_socket(ex);
  asio::ip::tcp::acceptor tcp_acceptor(ex);
  asio::ip::tcp::resolver tcp_resolver(ex);
  asio::ip::udp::socket udp_socket(ex);
  asio::ip::udp::resolver udp_resolver(ex);
  asio::posix::stream_descriptor descriptor(ex);
  asio::signal_set signals(ex);
  auto strand = asio::make_strand(ex);
  (void)strand;
}

} // namespace hotreload::detail

#endif
