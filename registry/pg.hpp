// SPDX-License-Identifier: Apache-2.0
// registry/pg.hpp - process groups (OTP's pg): named groups of processes,
// left automatically when a member exits.
#pragma once

#include "registry/keyed_registry.hpp"

#include <string>
#include <vector>

namespace otp {

/// A node's process groups (one pg scope).
///
/// A process may join a group several times and is then listed as many
/// times; each leave removes one membership; all of them go when it exits.
///
/// @par Thread safety
/// Every function is safe from any thread.
class process_groups {
public:
  /// Created by node::service (process_groups::of), once per node.
  explicit process_groups(node& n)
    : groups_(keyed_registry<std::string>::create(n, {.keys = keys::duplicate})) {}

  /// Returns the process groups of node `n`.
  [[nodiscard]] static process_groups& of(node& n) { return n.service<process_groups>(); }

  /// Adds `p` to `group` (pg:join/2). Fails with `noproc` if `p` is not
  /// alive, or `invalid_argument` for an empty group name.
  result<void> join(const std::string& group, const pid& p) {
    if (group.empty())
      return error{errc::invalid_argument, "pg::join: the group name is empty"};
    return groups_.register_pid(p, group);
  }

  /// Removes one membership of `p` in `group` (pg:leave/2); returns false
  /// if `p` was not a member (OTP's not_joined).
  bool leave(const std::string& group, const pid& p) { return groups_.unregister_one(p, group); }

  /// Returns the members of `group`, in joining order (pg:get_members/1).
  [[nodiscard]] std::vector<pid> members(const std::string& group) const {
    std::vector<pid> out;
    for (const auto& e : groups_.lookup(group))
      out.push_back(e.pid);
    return out;
  }

  /// Returns every group with at least one member (pg:which_groups/0).
  [[nodiscard]] std::vector<std::string> which_groups() const { return groups_.all_keys(); }

  /// Sends `value` to every member of `group`, once per membership; returns how many.
  template <class T>
  std::size_t send(const std::string& group, const T& value) const {
    return groups_.dispatch(group, [&](const pid& p, const std::monostate&) { otp::send(p, value); });
  }

private:
  keyed_registry<std::string>& groups_;
};

/// Process groups of the calling process's node, OTP's pg module.
namespace pg {

/// Adds `p` (default: the caller) to `group`.
inline result<void> join(const std::string& group, const pid& p) {
  return process_groups::of(detail::calling_node("pg::join")).join(group, p);
}
inline result<void> join(const std::string& group) { return join(group, self()); }
/// Removes one membership of `p` (default: the caller) in `group`.
inline bool leave(const std::string& group, const pid& p) {
  return process_groups::of(detail::calling_node("pg::leave")).leave(group, p);
}
inline bool leave(const std::string& group) { return leave(group, self()); }
/// Returns the members of `group`.
[[nodiscard]] inline std::vector<pid> members(const std::string& group) {
  return process_groups::of(detail::calling_node("pg::members")).members(group);
}
/// Returns every group with a member.
[[nodiscard]] inline std::vector<std::string> which_groups() {
  return process_groups::of(detail::calling_node("pg::which_groups")).which_groups();
}

} // namespace pg

} // namespace otp
