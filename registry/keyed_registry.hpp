// SPDX-License-Identifier: Apache-2.0
// registry/keyed_registry.hpp - a key-value process registry in the spirit of
// Elixir's Registry: unique or duplicate keys, a value per entry, dispatch,
// and automatic removal when a process exits.
#pragma once

#include "otp/detail/runtime.hpp"
#include "otp/error.hpp"
#include "otp/node.hpp"
#include "otp/pid.hpp"
#include "otp/process.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <shared_mutex>
#include <sstream>
#include <string>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace otp {

/// Whether a key holds at most one process or any number (Registry's :keys).
enum class keys { unique, duplicate };

/// How a keyed_registry is set up.
struct keyed_registry_options {
  otp::keys keys = otp::keys::unique;
  /// Key partitions, each with its own lock; 0: four per scheduler of the node.
  unsigned partitions = 0;
};

namespace detail {

// Objects a node owns until every process is gone (their exit hooks may use them).
class node_owned {
public:
  explicit node_owned(node&) {}
  template <class T>
  T& keep(std::unique_ptr<T> obj) {
    T& ref = *obj;
    std::lock_guard lock(mutex_);
    objects_.push_back(std::shared_ptr<void>(std::move(obj)));
    return ref;
  }

private:
  std::mutex mutex_;
  std::vector<std::shared_ptr<void>> objects_;
};

template <class K>
[[nodiscard]] std::string describe_key(const K& key) {
  if constexpr (requires(std::ostream& os) { os << key; }) {
    std::ostringstream os;
    os << key;
    return "'" + os.str() + "'";
  } else {
    return "the key";
  }
}

} // namespace detail

/// A registry of processes under keys, each entry with a value of type V.
///
/// With unique keys a key names at most one process (usable as a `via`
/// registry for servers); with duplicate keys a key gathers many (pub/sub,
/// dispatch). A process's entries are removed when it exits, before its
/// links and monitors are told. Created with create(), owned by the node.
///
/// @par Thread safety
/// Every function is safe from any thread. Keys are spread over partitions,
/// each with its own shared lock: a lookup locks one partition, shared.
template <class K, class V = std::monostate>
class keyed_registry {
public:
  /// One entry: a process and the value it registered.
  struct entry {
    otp::pid pid;
    V value;
  };

  /// Creates a registry owned by `n`: it lives until the node is destroyed.
  static keyed_registry& create(node& n, keyed_registry_options o = {}) {
    return n.service<detail::node_owned>().keep(std::unique_ptr<keyed_registry>(new keyed_registry(n, o)));
  }
  keyed_registry(const keyed_registry&) = delete;
  keyed_registry& operator=(const keyed_registry&) = delete;

  [[nodiscard]] otp::keys kind() const noexcept { return opts_.keys; }

  /// Registers the calling process under `key` with `value`
  /// (Registry.register/3). With unique keys a taken key fails with
  /// `already_started`, naming the holder; with duplicate keys a process may
  /// register a key several times.
  result<void> register_key(const K& key, V value = V{}) {
    return insert(detail::require_process("keyed_registry::register_key").self(), key, std::move(value));
  }

  /// Registers `p` under `key`; as register_key, for a process other than
  /// the caller. Fails with `noproc` if `p` is not alive.
  result<void> register_pid(const pid& p, const K& key, V value = V{}) { return insert(p, key, std::move(value)); }

  /// Removes the calling process's entries under `key`; returns how many.
  std::size_t unregister_key(const K& key) {
    return erase(detail::require_process("keyed_registry::unregister_key").self(), key, false);
  }

  /// Removes one entry of `p` under `key` (pg:leave); returns whether there was one.
  bool unregister_one(const pid& p, const K& key) { return erase(p, key, true) == 1; }

  /// Returns the entries under `key`, in registration order (Registry.lookup/2).
  [[nodiscard]] std::vector<entry> lookup(const K& key) const {
    const partition& part = partition_of(key);
    std::shared_lock lock(part.mutex);
    auto found = part.entries.find(key);
    return found == part.entries.end() ? std::vector<entry>{} : found->second;
  }

  /// Returns the process under a unique `key`, if any.
  [[nodiscard]] std::optional<pid> whereis(const K& key) const {
    const partition& part = partition_of(key);
    std::shared_lock lock(part.mutex);
    auto found = part.entries.find(key);
    if (found == part.entries.end() || found->second.empty())
      return std::nullopt;
    return found->second.front().pid;
  }

  /// Calls `f(pid, value)` for every entry under `key` (Registry.dispatch/3),
  /// outside the registry's locks, on a snapshot; returns how many.
  template <class F>
    requires std::is_invocable_v<F&, const pid&, const V&>
  std::size_t dispatch(const K& key, F f) const {
    const auto all = lookup(key);
    for (const auto& e : all)
      f(e.pid, e.value);
    return all.size();
  }

  /// Returns the entries under `key` whose value satisfies `pred` (Registry.match/3).
  template <class Pred>
    requires std::is_invocable_r_v<bool, Pred&, const V&>
  [[nodiscard]] std::vector<entry> match(const K& key, Pred pred) const {
    auto all = lookup(key);
    std::erase_if(all, [&](const entry& e) { return !pred(e.value); });
    return all;
  }

  /// Returns the keys `p` is registered under, one per entry (Registry.keys/2).
  [[nodiscard]] std::vector<K> keys_of(const pid& p) const {
    const pid_shard& ps = pid_shard_of(p);
    std::lock_guard lock(ps.mutex);
    auto found = ps.keys.find(p);
    return found == ps.keys.end() ? std::vector<K>{} : found->second;
  }

  /// Returns every key with at least one entry, in no particular order.
  [[nodiscard]] std::vector<K> all_keys() const {
    std::vector<K> out;
    for (const auto& part : partitions_) {
      std::shared_lock lock(part.mutex);
      for (const auto& [k, es] : part.entries)
        out.push_back(k);
    }
    return out;
  }

  /// Returns the number of entries (Registry.count/1).
  [[nodiscard]] std::size_t count() const {
    std::size_t n = 0;
    for (const auto& part : partitions_) {
      std::shared_lock lock(part.mutex);
      for (const auto& [k, es] : part.entries)
        n += es.size();
    }
    return n;
  }

  /// Replaces the calling process's value under a unique `key` with
  /// `f(old)` (Registry.update_value/3); returns the new value, or nothing
  /// if the caller does not hold the key.
  template <class F>
    requires std::is_invocable_r_v<V, F&, const V&>
  std::optional<V> update_value(const K& key, F f) {
    const pid me = detail::require_process("keyed_registry::update_value").self();
    partition& part = partition_of(key);
    std::unique_lock lock(part.mutex);
    auto found = part.entries.find(key);
    if (found == part.entries.end())
      return std::nullopt;
    for (auto& e : found->second) {
      if (e.pid == me) {
        e.value = f(std::as_const(e.value));
        return e.value;
      }
    }
    return std::nullopt;
  }

  // --- the via_registry interface (unique keys): names for gen_servers.

  /// Registers `p` under `key` (via's register_name).
  result<void> register_name(const K& key, const pid& p) {
    if (opts_.keys != otp::keys::unique)
      return error{errc::invalid_argument, "a keyed_registry with duplicate keys cannot name processes (via)"};
    return insert(p, key, V{});
  }
  /// Removes whoever holds `key` (via's unregister_name).
  void unregister_name(const K& key) {
    if (auto holder = whereis(key))
      (void)erase(*holder, key, false);
  }
  /// Returns the holder of `key` (via's whereis_name).
  [[nodiscard]] std::optional<pid> whereis_name(const K& key) const { return whereis(key); }

private:
  struct partition {
    mutable std::shared_mutex mutex;
    std::unordered_map<K, std::vector<entry>> entries;
  };
  // Per process: its keys, one per entry. A process is present from its
  // first registration until it exits: presence means its exit hook is set.
  struct pid_shard {
    mutable std::mutex mutex;
    std::unordered_map<pid, std::vector<K>> keys;
  };
  static constexpr std::size_t pid_shard_count = 16;

  keyed_registry(node& n, keyed_registry_options o)
    : opts_(o), partitions_(o.partitions != 0 ? o.partitions : 4 * n.scheduler_count()) {}

  [[nodiscard]] partition& partition_of(const K& key) const noexcept {
    return partitions_[std::hash<K>{}(key) % partitions_.size()];
  }
  [[nodiscard]] pid_shard& pid_shard_of(const pid& p) const noexcept {
    return pid_shards_[std::hash<pid>{}(p) % pid_shard_count];
  }

  result<void> insert(const pid& p, const K& key, V value) {
    if (!p)
      return error{errc::noproc, "keyed_registry: cannot register an empty pid under " + detail::describe_key(key)};
    pid_shard& ps = pid_shard_of(p);
    bool first = false;
    {
      std::lock_guard pid_lock(ps.mutex);
      partition& part = partition_of(key);
      std::unique_lock lock(part.mutex);
      auto& es = part.entries[key];
      if (opts_.keys == otp::keys::unique && !es.empty())
        return error{errc::already_started, "keyed_registry: " + detail::describe_key(key) + " is already registered to "
                                              + es.front().pid.to_string()};
      es.push_back(entry{p, std::move(value)});
      auto [it, inserted] = ps.keys.try_emplace(p);
      it->second.push_back(key);
      first = inserted;
    }
    // The hook removes p's entries when it exits; a process already gone
    // refuses it, and one that exits before installing it runs it then.
    if (first && !detail::add_exit_hook(p, {&keyed_registry::on_exit, this})) {
      forget(p);
      return error{errc::noproc, "keyed_registry: " + p.to_string() + " is not alive"};
    }
    return outcome::success();
  }

  std::size_t erase(const pid& p, const K& key, bool just_one) {
    pid_shard& ps = pid_shard_of(p);
    std::lock_guard pid_lock(ps.mutex);
    auto held = ps.keys.find(p);
    if (held == ps.keys.end())
      return 0;
    std::size_t removed = 0;
    {
      partition& part = partition_of(key);
      std::unique_lock lock(part.mutex);
      auto found = part.entries.find(key);
      if (found == part.entries.end())
        return 0;
      auto& es = found->second;
      for (auto it = es.begin(); it != es.end();) {
        if (it->pid == p && (!just_one || removed == 0)) {
          it = es.erase(it);
          ++removed;
        } else {
          ++it;
        }
      }
      if (es.empty())
        part.entries.erase(found);
    }
    auto& ks = held->second;
    for (std::size_t i = 0; i < removed; ++i)
      ks.erase(std::find(ks.begin(), ks.end(), key));
    return removed;
  }

  // Removes every entry of `who`, once it is gone.
  void forget(const pid& who) noexcept {
    pid_shard& ps = pid_shard_of(who);
    std::lock_guard pid_lock(ps.mutex);
    auto held = ps.keys.find(who);
    if (held == ps.keys.end())
      return;
    for (const K& key : held->second) {
      partition& part = partition_of(key);
      std::unique_lock lock(part.mutex);
      auto found = part.entries.find(key);
      if (found == part.entries.end())
        continue;
      std::erase_if(found->second, [&](const entry& e) { return e.pid == who; });
      if (found->second.empty())
        part.entries.erase(found);
    }
    ps.keys.erase(held);
  }

  static void on_exit(void* self, const pid& who) noexcept { static_cast<keyed_registry*>(self)->forget(who); }

  keyed_registry_options opts_;
  mutable std::vector<partition> partitions_;
  mutable std::array<pid_shard, pid_shard_count> pid_shards_;
};

} // namespace otp
