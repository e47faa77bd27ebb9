#ifndef HOTRELOAD_DETAIL_GRAPH_HPP
#define HOTRELOAD_DETAIL_GRAPH_HPP

// The dependency graph: plain functions over plugin metadata (no reloader, no template), so
// they are compiled once and unit-tested on their own.

#include <hotreload/detail/result.hpp>
#include <hotreload/detail/semver.hpp>
#include <hotreload/metadata.hpp>

#include <algorithm>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace hotreload::detail {

/// Which version of each plugin serves (or will serve), by name; nullptr: none does.
using version_map = std::map<std::string, const plugin_metadata*, std::less<>>;

/// A graph given as, for each node, the indices of the nodes it comes after.
using predecessor_lists = std::vector<std::vector<std::size_t>>;

/// One node: a plugin's name and the metadata of its version (nullptr: none loaded).
struct graph_node {
  std::string name;
  const plugin_metadata* meta = nullptr;
};

/// Whether `deps` (a version's "depends_on") names `name`.
inline bool depends_on(const std::vector<dependency>& deps, std::string_view name) {
  return std::any_of(deps.begin(), deps.end(), [&](const dependency& d) { return d.name == name; });
}
inline bool depends_on(const plugin_metadata& m, std::string_view name) { return depends_on(m.depends_on, name); }

/// Why the version `m` cannot serve next to `versions`: a dependency on itself, one that is
/// not there, or one whose version misses the requirement. Empty if it can.
inline error_info dependency_problem(const plugin_metadata& m, const version_map& versions) {
  const auto& name = m.name;
  for (auto& d : m.depends_on) {
    if (d.name == name)
      return fail(errc::dependency_cycle, name, "plugin '" + name + "' depends on itself; remove it from \"depends_on\"");
    auto it = versions.find(d.name);
    if (it == versions.end() || !it->second)
      return fail(errc::missing_dependency, name,
                  "plugin '" + name + "' depends on '" + d.name + "', which is not loaded; add its library to a plugin "
                  "directory (or remove it from \"depends_on\")");
    if (d.requirement.empty()) continue;
    const auto& have = it->second->version;
    auto ok = satisfies(have, d.requirement);
    if (!ok)
      return fail(errc::dependency_version, name,
                  "plugin '" + name + "' requires '" + d.name + " " + d.requirement +
                      "', which cannot be compared with version '" + have +
                      "'; use versions like 1.2.3 and requirements like >=1.2");
    if (!*ok)
      return fail(errc::dependency_version, name,
                  "plugin '" + name + "' requires '" + d.name + " " + d.requirement + "' but " + d.name + " is " + have +
                      "; load a matching version of one of them");
  }
  return {};
}

/// The first plugin of `versions` that depends on `name` and whose version requirement on it
/// `versions` does not meet: what a new version of `name` would break. Empty if none.
inline error_info broken_dependent(std::string_view name, const version_map& versions) {
  for (auto& [n, m] : versions)
    if (m && m->name != name && depends_on(*m, name))
      if (auto p = dependency_problem(*m, versions); p.code == errc::dependency_version) return p;
  return {};
}

/// A dependency cycle among `versions`, as the plugins on it in order ("a", "b" for a -> b ->
/// a); empty if there is none.
inline std::vector<std::string> find_cycle(const version_map& versions) {
  std::map<std::string, int, std::less<>> color; // 0 new, 1 on the path, 2 done
  std::vector<std::string> path, found;
  std::function<bool(const std::string&)> visit = [&](const std::string& n) {
    color[n] = 1;
    path.push_back(n);
    auto it = versions.find(n);
    if (it != versions.end() && it->second)
      for (auto& d : it->second->depends_on) {
        if (!versions.contains(d.name) || d.name == n) continue;
        if (color[d.name] == 1) {
          found.assign(std::find(path.begin(), path.end(), d.name), path.end());
          return true;
        }
        if (color[d.name] == 0 && visit(d.name)) return true;
      }
    path.pop_back();
    color[n] = 2;
    return false;
  };
  for (auto& [n, v] : versions)
    if (color[n] == 0 && visit(n)) break;
  return found;
}

/// A cycle as people read it: "a -> b -> a".
inline std::string cycle_text(const std::vector<std::string>& cycle) {
  std::string s;
  for (auto& n : cycle) s += n + " -> ";
  return cycle.empty() ? s : s + cycle.front();
}

/// A topological order of a DAG (ties in index order): every node after its predecessors.
inline std::vector<std::size_t> topological(const predecessor_lists& preds) {
  std::vector<std::size_t> order;
  std::vector<bool> seen(preds.size());
  std::function<void(std::size_t)> visit = [&](std::size_t i) {
    if (seen[i]) return;
    seen[i] = true;
    for (auto p : preds[i]) visit(p);
    order.push_back(i);
  };
  for (std::size_t i = 0; i < preds.size(); ++i) visit(i);
  return order;
}

/// For each node, the nodes of the list it depends on.
inline predecessor_lists dependencies_within(const std::vector<graph_node>& nodes) {
  predecessor_lists preds(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i)
    if (nodes[i].meta)
      for (std::size_t j = 0; j < nodes.size(); ++j)
        if (depends_on(*nodes[i].meta, nodes[j].name)) preds[i].push_back(j);
  return preds;
}

/// The same graph with every edge turned around: for each node, the nodes that depend on it.
inline predecessor_lists reversed(const predecessor_lists& preds) {
  predecessor_lists out(preds.size());
  for (std::size_t i = 0; i < preds.size(); ++i)
    for (auto p : preds[i]) out[p].push_back(i);
  return out;
}

/// The nodes ordered so that each comes before the nodes it depends on (the order to stop in).
inline std::vector<std::size_t> dependents_first(const std::vector<graph_node>& nodes) {
  auto order = topological(dependencies_within(nodes));
  std::reverse(order.begin(), order.end());
  return order;
}

/// `names` and, transitively, every plugin of `versions` that depends on one of them.
inline std::vector<std::string> with_dependents(std::vector<std::string> names, const version_map& versions) {
  for (std::size_t i = 0; i < names.size(); ++i)
    for (auto& [n, m] : versions)
      if (m && depends_on(*m, names[i]) && std::find(names.begin(), names.end(), n) == names.end())
        names.push_back(n);
  return names;
}

} // namespace hotreload::detail

#endif
