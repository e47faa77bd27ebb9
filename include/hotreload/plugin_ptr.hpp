#ifndef HOTRELOAD_PLUGIN_PTR_HPP
#define HOTRELOAD_PLUGIN_PTR_HPP

#include <hotreload/metadata.hpp>

#include <memory>

namespace hotreload {

/// A handle to one version of a plugin. While any copy exists, that version's object and
/// library stay alive (the Boost.DLL import guarantee), and a reload of the plugin waits
/// (up to options.quiesce_timeout) for it to be released before it snapshots the state.
/// So hold one per request or task, not for the life of the program.
template <class Interface>
class plugin_ptr {
public:
  plugin_ptr() noexcept = default;
  plugin_ptr(std::shared_ptr<Interface> object, const plugin_metadata* metadata) noexcept
      : object_(std::move(object)), metadata_(metadata) {}

  Interface* get() const noexcept { return object_.get(); }
  Interface* operator->() const noexcept { return object_.get(); }
  Interface& operator*() const noexcept { return *object_; }
  explicit operator bool() const noexcept { return static_cast<bool>(object_); }
  void reset() noexcept {
    object_.reset();
    metadata_ = nullptr;
  }

  /// Metadata of the version this handle points to (name, version, ...).
  const plugin_metadata& metadata() const noexcept { return *metadata_; }

  friend bool operator==(const plugin_ptr& a, const plugin_ptr& b) noexcept { return a.object_ == b.object_; }

  /// The same handle as another interface of the object (dynamic_cast), or empty.
  template <class To>
  friend plugin_ptr<To> dynamic_pointer_cast(const plugin_ptr& p) {
    auto* to = dynamic_cast<To*>(p.object_.get());
    if (!to) return {};
    return plugin_ptr<To>(std::shared_ptr<To>(p.object_, to), p.metadata_);
  }

private:
  std::shared_ptr<Interface> object_;
  const plugin_metadata* metadata_ = nullptr;
};

} // namespace hotreload

#endif
