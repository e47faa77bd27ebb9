# The consumer projects' targets, once hotreload is found (find_package) or built
# (FetchContent): the host, two builds of the plugin, and one built against a changed header.
add_executable(host ../common/host.cpp)
target_include_directories(host PRIVATE ../common)
hotreload_add_host(host INTERFACE ../common/tally.hpp)
foreach(v 1 2)
  hotreload_add_plugin(tally_v${v} SOURCES ../common/plugin.cpp INTERFACE ../common/tally.hpp)
  target_include_directories(tally_v${v} PRIVATE ../common)
  target_compile_definitions(tally_v${v} PRIVATE TALLY_VERSION="${v}")
endforeach()
# Built against a changed tally.hpp (same interface_version): the host must refuse it.
hotreload_add_plugin(tally_changed SOURCES ../common/plugin.cpp INTERFACE ../common/changed/tally.hpp)
target_include_directories(tally_changed PRIVATE ../common/changed)
target_compile_definitions(tally_changed PRIVATE TALLY_VERSION="3")
