// libFuzzer target: the plugin metadata parser (any bytes a library may export). It must
// never crash, and what it accepts must satisfy every documented rule.
#include <hotreload/metadata.hpp>

#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  hotreload::plugin_metadata m;
  auto err = hotreload::parse_metadata(text, "fuzz.so", m);
  if (err) {
    if (err.code != hotreload::errc::bad_metadata || err.message.empty()) std::abort();
    return 0;
  }
  if (m.name.empty() || m.state_version < 1 || text.size() > hotreload::max_metadata_size) std::abort();
  if (!hotreload::valid_name(m.name)) std::abort();
  for (auto& d : m.depends_on) {
    if (!hotreload::valid_name(d.name)) std::abort();
    if (!d.requirement.empty() && !hotreload::detail::satisfies("1.0.0", d.requirement)) std::abort();
  }
  return 0;
}
