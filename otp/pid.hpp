// SPDX-License-Identifier: Apache-2.0
// otp/pid.hpp - process identifiers and monitor references.
#pragma once

#include "otp/fwd.hpp"

#include <compare>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>

namespace otp {

/// Identifies a process: small, copyable, comparable, hashable, printable.
///
/// A pid names one process for ever: its 64-bit id is never reused within a
/// node (56 bits of serial per scheduler), so a stale pid can never reach a
/// newer process, even when the newer one recycled the same control block.
/// A default-constructed pid names no process. It prints as `<0.S.N>`:
/// node 0 (the local node; distribution comes later), scheduler S (where it
/// was spawned), serial N.
class pid {
public:
  constexpr pid() noexcept = default;

  /// Returns whether this pid names a process (alive or not).
  [[nodiscard]] constexpr explicit operator bool() const noexcept { return id_ != 0; }

  /// Returns the index of the scheduler the process was spawned on (it may
  /// run elsewhere since: process_info::scheduler says where it runs now).
  [[nodiscard]] constexpr unsigned scheduler_index() const noexcept {
    return static_cast<unsigned>(id_ >> serial_bits);
  }
  /// Returns the per-scheduler serial number.
  [[nodiscard]] constexpr std::uint64_t serial() const noexcept {
    return id_ & serial_mask;
  }
  /// Returns the node-unique 64-bit identity.
  [[nodiscard]] constexpr std::uint64_t id() const noexcept { return id_; }

  [[nodiscard]] std::string to_string() const;

  friend constexpr bool operator==(const pid& a, const pid& b) noexcept {
    return a.id_ == b.id_;
  }
  friend constexpr std::strong_ordering operator<=>(const pid& a, const pid& b) noexcept {
    return a.id_ <=> b.id_;
  }

  static constexpr unsigned serial_bits = 56;
  static constexpr std::uint64_t serial_mask = (std::uint64_t{1} << serial_bits) - 1;

private:
  friend struct detail::process;
  friend class scheduler;
  friend class node;
  constexpr pid(detail::process* p, std::uint64_t id) noexcept : proc_(p), id_(id) {}

  // The control block is type-stable (pooled until the node is destroyed),
  // so a stale pointer is safe to inspect; id_ decides whether it is ours.
  detail::process* proc_ = nullptr;
  std::uint64_t id_ = 0;

public:
  /// @private Runtime access to the control block.
  [[nodiscard]] detail::process* control_block() const noexcept { return proc_; }
};

std::ostream& operator<<(std::ostream& os, const pid& p);

/// Identifies one monitor (Erlang's monitor reference); unique per node.
class monitor_ref {
public:
  constexpr monitor_ref() noexcept = default;
  constexpr explicit monitor_ref(std::uint64_t v) noexcept : value_(v) {}
  [[nodiscard]] constexpr std::uint64_t value() const noexcept { return value_; }
  [[nodiscard]] constexpr explicit operator bool() const noexcept { return value_ != 0; }
  [[nodiscard]] std::string to_string() const;
  friend constexpr bool operator==(const monitor_ref&, const monitor_ref&) noexcept = default;
  friend constexpr auto operator<=>(const monitor_ref&, const monitor_ref&) noexcept = default;

private:
  std::uint64_t value_ = 0;
};

std::ostream& operator<<(std::ostream& os, const monitor_ref& r);

/// Identifies a timer started by send_after; unique per node.
class timer_ref {
public:
  constexpr timer_ref() noexcept = default;
  constexpr explicit timer_ref(std::uint64_t v) noexcept : value_(v) {}
  [[nodiscard]] constexpr std::uint64_t value() const noexcept { return value_; }
  [[nodiscard]] constexpr explicit operator bool() const noexcept { return value_ != 0; }
  friend constexpr bool operator==(const timer_ref&, const timer_ref&) noexcept = default;

private:
  std::uint64_t value_ = 0;
};

} // namespace otp

template <>
struct std::hash<otp::pid> {
  std::size_t operator()(const otp::pid& p) const noexcept {
    return std::hash<std::uint64_t>{}(p.id());
  }
};
template <>
struct std::hash<otp::monitor_ref> {
  std::size_t operator()(const otp::monitor_ref& r) const noexcept {
    return std::hash<std::uint64_t>{}(r.value());
  }
};
