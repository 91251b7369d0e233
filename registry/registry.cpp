// SPDX-License-Identifier: Apache-2.0
#include "registry/registry.hpp"

#include "otp/detail/runtime.hpp"

namespace otp {

result<void> registry::register_name(const std::string& name, const pid& p) {
  if (name.empty())
    return error{errc::invalid_argument, "register_name: the name is empty"};
  if (!p)
    return error{errc::noproc, "register_name: cannot register '" + name + "' to an empty pid"};
  {
    std::lock_guard by_pid_lock(by_pid_mutex_);
    if (auto held = by_pid_.find(p); held != by_pid_.end())
      return error{errc::invalid_argument,
                   "register_name: " + p.to_string() + " is already registered as '" + held->second + "'"};
    shard& s = shard_of(name);
    std::unique_lock lock(s.mutex);
    if (auto taken = s.names.find(name); taken != s.names.end())
      return error{errc::already_started,
                   "register_name: '" + name + "' is already registered to " + taken->second.to_string()};
    s.names.emplace(name, p);
    by_pid_.emplace(p, name);
    if (!hooked_.insert(p).second)
      return outcome::success(); // its hook is installed (so it has not exited)
  }
  // The hook frees the name when p exits. If p is already gone it refuses
  // the hook; if p exits before it installs it, the hook runs then.
  if (!detail::add_exit_hook(p, {&registry::on_exit, this})) {
    forget(p);
    return error{errc::noproc, "register_name: " + p.to_string() + " is not alive"};
  }
  return outcome::success();
}

bool registry::unregister_name(std::string_view name) {
  std::lock_guard by_pid_lock(by_pid_mutex_);
  shard& s = shard_of(name);
  std::unique_lock lock(s.mutex);
  auto found = s.names.find(name);
  if (found == s.names.end())
    return false;
  by_pid_.erase(found->second);
  s.names.erase(found);
  return true;
}

std::optional<pid> registry::whereis(std::string_view name) const {
  shard& s = shard_of(name);
  std::shared_lock lock(s.mutex);
  auto found = s.names.find(name);
  if (found == s.names.end())
    return std::nullopt;
  return found->second;
}

std::vector<std::string> registry::registered() const {
  std::vector<std::string> out;
  for (auto& s : shards_) {
    std::shared_lock lock(s.mutex);
    for (const auto& [name, p] : s.names)
      out.push_back(name);
  }
  return out;
}

void registry::forget(const pid& who) noexcept {
  std::lock_guard by_pid_lock(by_pid_mutex_);
  hooked_.erase(who); // called only once `who` is gone
  auto held = by_pid_.find(who);
  if (held == by_pid_.end())
    return; // unregistered meanwhile
  shard& s = shard_of(held->second);
  {
    std::unique_lock lock(s.mutex);
    if (auto found = s.names.find(held->second); found != s.names.end() && found->second == who)
      s.names.erase(found);
  }
  by_pid_.erase(held);
}

void registry::on_exit(void* self, const pid& who) noexcept { static_cast<registry*>(self)->forget(who); }

result<void> register_name(const std::string& name, const pid& p) {
  return registry::of(detail::calling_node("register_name")).register_name(name, p);
}

bool unregister_name(std::string_view name) {
  return registry::of(detail::calling_node("unregister_name")).unregister_name(name);
}

std::optional<pid> whereis(std::string_view name) { return registry::of(detail::calling_node("whereis")).whereis(name); }

} // namespace otp
