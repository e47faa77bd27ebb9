// A host linked without export-dynamic (unlike test_hotreload): loads one plugin library
// and says whether it was accepted; and the reloader has warned that the program does not
// export its symbols. Usage: abi_host PLUGIN.so ok|abi_mismatch
#include <hotreload.hpp>

#include "plugins/counter_iface.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <cstdio>
#include <optional>
#include <string>

int main(int argc, char** argv) {
  namespace hr = hotreload;
  if (argc != 3) return 2;
  std::filesystem::path plugin = argv[1];
  std::string expected = argv[2];
  boost::asio::io_context io;
  bool warned = false;
  hr::basic_hot_reloader<test::counter_iface, hr::manual_watcher> r(
      io.get_executor(), hr::options{.plugin_dirs = {plugin.parent_path()},
                                     .paths_env = {},
                                     .include = {plugin.filename().string()},
                                     .verbosity = hr::log_level::warning,
                                     .sink = [&](const hr::log_record& l) {
                                       warned = warned || l.message.find("does not export its symbols") != l.message.npos;
                                     }});
  // Runs the io_context until the operation completes (a plugin keeps a timer armed).
  auto wait = [&](auto start) {
    std::optional<hr::error_code> result;
    start([&](hr::error_code e) { result = e; });
    while (!result) {
      if (io.stopped()) io.restart(); // it ran out of work earlier
      io.run_one();
    }
    return *result;
  };
  auto ec = wait([&](auto done) { r.async_start(done); });
  std::string got = !ec ? "ok" : ec == hr::errc::abi_mismatch ? "abi_mismatch" : ec.message();
  bool serving = static_cast<bool>(r.try_get("counter"));
  wait([&](auto done) { r.async_stop(done); });
  std::printf("%s: %s (expected %s), %s, %s\n", plugin.filename().c_str(), got.c_str(), expected.c_str(),
              serving ? "serving" : "not serving", warned ? "warned about export-dynamic" : "NOT warned");
  return got == expected && serving == (expected == "ok") && warned ? 0 : 1;
}
