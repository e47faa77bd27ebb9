// libFuzzer target: reading a persisted state snapshot (any bytes a state file may hold
// after a crash, a disk error or a person's edit). It must never crash; it yields an object
// or a reason.
#include <hotreload/state/persistent_json_state.hpp>

#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string why;
  auto snapshot = hotreload::persistent_json_state::parse_snapshot(
      std::string_view(reinterpret_cast<const char*>(data), size), why);
  if (snapshot.has_value() == !why.empty()) std::abort(); // exactly one of the two
  return 0;
}
