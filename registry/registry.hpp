// SPDX-License-Identifier: Apache-2.0
// registry/registry.hpp - local names for processes (erlang:register/2 and friends).
#pragma once

#include "otp/error.hpp"
#include "otp/node.hpp"
#include "otp/pid.hpp"
#include "otp/process.hpp"

#include <array>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace otp {

/// A node's table of registered names (Erlang's local names).
///
/// A name is freed when its process exits, before the process's links and
/// monitors are told, so a supervisor that restarts it on the DOWN can
/// register the new one at once. A process holds at most one name.
///
/// @par Thread safety
/// Every function is safe from any thread. A lookup takes a shared lock on
/// one of 16 shards (chosen by the name's hash), never a node-wide lock.
class registry {
public:
  /// Created by node::service (registry::of), once per node.
  explicit registry(node&) {}
  registry(const registry&) = delete;
  registry& operator=(const registry&) = delete;

  /// Returns the registry of node `n`.
  [[nodiscard]] static registry& of(node& n) { return n.service<registry>(); }

  /// Registers `p` under `name`. Fails with `invalid_argument` for an empty
  /// name or a process that already has a name, `already_started` (naming the
  /// holder) for a taken name, and `noproc` for a process that is not alive.
  result<void> register_name(const std::string& name, const pid& p);

  /// Removes `name`; returns whether it was registered.
  bool unregister_name(std::string_view name);

  /// Returns the process registered under `name`, if any.
  [[nodiscard]] std::optional<pid> whereis(std::string_view name) const;

  /// Returns every registered name, in no particular order.
  [[nodiscard]] std::vector<std::string> registered() const;

private:
  struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct shard {
    mutable std::shared_mutex mutex;
    std::unordered_map<std::string, pid, string_hash, std::equal_to<>> names;
  };
  static constexpr std::size_t shard_count = 16;

  [[nodiscard]] shard& shard_of(std::string_view name) const noexcept {
    return shards_[string_hash{}(name) % shard_count];
  }
  void forget(const pid& who) noexcept;
  static void on_exit(void* self, const pid& who) noexcept;

  mutable std::array<shard, shard_count> shards_;
  // Which name each process holds: written on (un)register and exit only.
  std::mutex by_pid_mutex_;
  std::unordered_map<pid, std::string> by_pid_;
  // Processes whose exit hook is installed: one hook per process, however
  // often it registers and unregisters.
  std::unordered_set<pid> hooked_;
};

/// Registers `p` as `name` in the calling process's node (erlang:register/2).
result<void> register_name(const std::string& name, const pid& p);
/// Removes `name` in the calling process's node (erlang:unregister/1).
bool unregister_name(std::string_view name);
/// Returns the pid registered as `name` in the calling process's node (erlang:whereis/1).
[[nodiscard]] std::optional<pid> whereis(std::string_view name);

/// Sends `value` to the process registered as `name` (Erlang's `Name ! Msg`).
/// Fails with `noproc`, sending nothing, if no process has that name.
template <class T>
result<void> send(std::string_view name, T&& value) {
  auto to = whereis(name);
  if (!to)
    return error{errc::noproc, "no process is registered as '" + std::string(name) + "'"};
  send(*to, std::forward<T>(value));
  return outcome::success();
}

} // namespace otp
