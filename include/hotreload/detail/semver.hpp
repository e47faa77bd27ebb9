#ifndef HOTRELOAD_DETAIL_SEMVER_HPP
#define HOTRELOAD_DETAIL_SEMVER_HPP

#include <array>
#include <charconv>
#include <optional>
#include <string>
#include <string_view>

namespace hotreload::detail {

/// major.minor.patch with an optional pre-release ("1.2.0-rc1" < "1.2.0"); build metadata
/// ("+abc") is ignored. Missing parts are 0: "1.2" is 1.2.0.
struct semver {
  std::array<long, 3> part{0, 0, 0};
  std::string pre;

  static std::optional<semver> parse(std::string_view s) {
    semver v;
    if (auto plus = s.find('+'); plus != std::string_view::npos) s = s.substr(0, plus);
    if (auto dash = s.find('-'); dash != std::string_view::npos) {
      v.pre = std::string(s.substr(dash + 1));
      s = s.substr(0, dash);
    }
    for (std::size_t i = 0; i < 3 && !s.empty(); ++i) {
      auto dot = s.find('.');
      auto num = s.substr(0, dot);
      auto [ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), v.part[i]);
      if (ec != std::errc() || ptr != num.data() + num.size() || num.empty()) return std::nullopt;
      if (v.part[i] > 999'999'999'999) return std::nullopt; // so that `^`/`~` bounds cannot overflow
      s = dot == std::string_view::npos ? std::string_view() : s.substr(dot + 1);
      if (dot != std::string_view::npos && s.empty()) return std::nullopt;
    }
    if (!s.empty()) return std::nullopt;
    return v;
  }

  friend int compare(const semver& a, const semver& b) {
    for (int i = 0; i < 3; ++i)
      if (a.part[i] != b.part[i]) return a.part[i] < b.part[i] ? -1 : 1;
    if (a.pre == b.pre) return 0;
    if (a.pre.empty()) return 1; // a release is newer than its pre-releases
    if (b.pre.empty()) return -1;
    return a.pre < b.pre ? -1 : 1;
  }
};

/// Whether `version` satisfies `requirement`: comparators separated by ',' or spaces, all
/// of which must hold: `>=1.2`, `>1`, `<2.0`, `<=1.4.2`, `=1.2.3` (or `==`, or a bare
/// version), `^1.2` (same major: >=1.2.0 <2.0.0; for 0.x same minor), `~1.2` (>=1.2.0 <1.3.0),
/// `*`. Returns nothing when `requirement` or `version` cannot be parsed.
inline std::optional<bool> satisfies(std::string_view version, std::string_view requirement) {
  auto v = semver::parse(version);
  if (!v) return std::nullopt;
  bool ok = true;
  std::size_t i = 0;
  bool any = false;
  while (i < requirement.size()) {
    while (i < requirement.size() && (requirement[i] == ' ' || requirement[i] == ',')) ++i;
    if (i == requirement.size()) break;
    auto j = requirement.find_first_of(" ,", i);
    auto tok = requirement.substr(i, j == std::string_view::npos ? std::string_view::npos : j - i);
    i = j == std::string_view::npos ? requirement.size() : j;
    // An operator followed by a space ("<= 2") belongs to the next token.
    if (tok.find_first_not_of("<>=!^~") == std::string_view::npos && i < requirement.size()) {
      while (i < requirement.size() && requirement[i] == ' ') ++i;
      auto k = requirement.find_first_of(" ,", i);
      auto rest = requirement.substr(i, k == std::string_view::npos ? std::string_view::npos : k - i);
      i = k == std::string_view::npos ? requirement.size() : k;
      std::string joined = std::string(tok) + std::string(rest);
      auto r = satisfies(version, joined);
      if (!r) return std::nullopt;
      ok = ok && *r;
      any = true;
      continue;
    }
    any = true;
    if (tok == "*") continue;
    auto op_end = tok.find_first_not_of("<>=!^~");
    if (op_end == std::string_view::npos) return std::nullopt;
    auto op = tok.substr(0, op_end);
    auto r = semver::parse(tok.substr(op_end));
    if (!r) return std::nullopt;
    int c = compare(*v, *r);
    if (op == ">=") ok = ok && c >= 0;
    else if (op == ">") ok = ok && c > 0;
    else if (op == "<=") ok = ok && c <= 0;
    else if (op == "<") ok = ok && c < 0;
    else if (op.empty() || op == "=" || op == "==") ok = ok && c == 0;
    else if (op == "!=") ok = ok && c != 0;
    else if (op == "^" || op == "~") {
      semver upper = *r;
      upper.pre.clear();
      if (op == "~" || r->part[0] == 0) upper.part = {r->part[0], r->part[1] + 1, 0};
      else upper.part = {r->part[0] + 1, 0, 0};
      ok = ok && c >= 0 && compare(*v, upper) < 0;
    } else {
      return std::nullopt;
    }
  }
  if (!any) return true;
  return ok;
}

} // namespace hotreload::detail

#endif
