#ifndef HOTRELOAD_METADATA_HPP
#define HOTRELOAD_METADATA_HPP

#include <hotreload/detail/semver.hpp>
#include <hotreload/error.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hotreload {

/// A dependency as declared in `depends_on`: a name and an optional version requirement
/// (`"db"` or `"db >=1.2"`).
struct dependency {
  std::string name;
  std::string requirement;
};

/// A plugin's metadata, the original design's PLUGIN_META, as given to HOTRELOAD_PLUGIN.
struct plugin_metadata {
  std::string name;
  std::string version = "0.0.0";
  std::vector<dependency> depends_on;
  std::int64_t state_version = 1;
  boost::json::object raw; ///< the whole object, with any extra fields
};

/// Compares two versions as `depends_on` requirements do (major.minor.patch, a pre-release
/// before its release: "1.2.0-rc1" < "1.2.0"): negative, zero or positive; nothing if either
/// cannot be parsed. For acceptance checks, e.g. refusing downgrades.
inline std::optional<int> compare_versions(std::string_view a, std::string_view b) {
  auto va = detail::semver::parse(a), vb = detail::semver::parse(b);
  if (!va || !vb) return std::nullopt;
  return compare(*va, *vb);
}

/// Longest metadata text accepted; anything longer is refused before parsing.
inline constexpr std::size_t max_metadata_size = 64 * 1024;

/// Plugin names: letters, digits, '_', '-' and '.', but not "." or ".." (names become file
/// names, e.g. persistent_json_state's `<name>.json`).
inline bool valid_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
}
inline bool valid_name(std::string_view s) {
  return !s.empty() && s != "." && s != ".." && std::all_of(s.begin(), s.end(), valid_name_char);
}

/// Parses and validates metadata text. On failure returns an errc::bad_metadata error whose
/// message names the field and the fix; `origin` (a file name) goes into the message.
inline error_info parse_metadata(std::string_view text, std::string_view origin, plugin_metadata& out) {
  auto fail = [&](std::string why) {
    return error_info{make_error_code(errc::bad_metadata), std::string(),
                      std::string(origin) + ": plugin metadata " + why +
                          "; fix the JSON given to HOTRELOAD_PLUGIN, e.g. "
                          R"({"name": "counter", "version": "1.0.0"})"};
  };
  if (text.size() > max_metadata_size)
    return fail("is longer than the " + std::to_string(max_metadata_size) + " bytes allowed");
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec) return fail("is not valid JSON (" + ec.message() + ")");
  if (!v.is_object()) return fail("must be a JSON object");
  auto& o = v.get_object();
  plugin_metadata m;
  auto* name = o.if_contains("name");
  if (!name || !name->is_string() || name->get_string().empty())
    return fail("needs \"name\", a non-empty string");
  m.name = name->get_string();
  for (char c : m.name)
    if (!valid_name_char(c))
      return fail("\"name\" may hold only letters, digits, '_', '-' and '.', not '" +
                  std::string(1, c) + "'");
  if (!valid_name(m.name)) return fail("\"name\" must not be \".\" or \"..\"");
  if (auto* ver = o.if_contains("version")) {
    if (!ver->is_string()) return fail("field \"version\" must be a string such as \"1.0.0\"");
    m.version = ver->get_string();
  }
  if (auto* deps = o.if_contains("depends_on")) {
    if (!deps->is_array()) return fail("field \"depends_on\" must be an array of plugin names");
    for (auto& d : deps->get_array()) {
      if (!d.is_string() || d.get_string().empty())
        return fail("field \"depends_on\" must hold only non-empty strings");
      std::string_view s = d.get_string();
      auto sp = s.find_first_of(" <>=!~^");
      dependency dep{std::string(s.substr(0, sp)), {}};
      if (sp != std::string_view::npos) {
        auto req = s.substr(sp);
        auto first = req.find_first_not_of(' ');
        dep.requirement = first == std::string_view::npos ? std::string() : std::string(req.substr(first));
      }
      auto entry = "field \"depends_on\" entry \"" + std::string(s) + "\" ";
      if (dep.name.empty() || !valid_name(dep.name))
        return fail(entry + "must start with a plugin name (letters, digits, '_', '-', '.'), e.g. \"db >=1.2\"");
      if (!dep.requirement.empty() && !detail::satisfies("0.0.0", dep.requirement))
        return fail(entry + "has a version requirement that cannot be parsed; use comparators such as "
                            "\">=1.2, <2\", \"^1.4\", \"~1.2.3\" or \"*\"");
      m.depends_on.push_back(std::move(dep));
    }
  }
  if (auto* sv = o.if_contains("state_version")) {
    if (!sv->is_int64() || sv->get_int64() < 1)
      return fail("field \"state_version\" must be an integer >= 1");
    m.state_version = sv->get_int64();
  }
  m.raw = std::move(o);
  out = std::move(m);
  return {};
}

} // namespace hotreload

#endif
