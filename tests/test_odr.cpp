// A second translation unit that includes the umbrella header and instantiates the
// reloader: linked with test_reloader.cpp, it proves the headers hold no ODR violation
// (everything in them is inline or a template).
#include <hotreload.hpp>

#include "plugins/counter_iface.hpp"

#include <boost/asio/io_context.hpp>

namespace odr {
std::size_t plugin_count() {
  boost::asio::io_context io;
  hotreload::hot_reloader<test::counter_iface> r(io.get_executor());
  return r.plugins().size() + r.get_options().plugin_dirs.size();
}
} // namespace odr

#include <doctest/doctest.h>

TEST_CASE("a second translation unit links against the same headers") { CHECK(odr::plugin_count() == 0); }
