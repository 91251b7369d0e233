// SPDX-License-Identifier: Apache-2.0
// registry/name.hpp - how a process is addressed by name: a local name, or a
// key in a registry of the user's choice (OTP's {via, Module, Name}).
#pragma once

#include "otp/error.hpp"
#include "otp/pid.hpp"
#include "registry/registry.hpp"

#include <concepts>
#include <memory>
#include <optional>
#include <ostream>
#include <sstream>
#include <string>
#include <utility>
#include <variant>

namespace otp {

/// A registry usable through `via` (the callbacks of OTP's via modules).
/// `register_name` is called by the process being named, before its init;
/// the registry should drop the name when the process exits.
template <class R, class K>
concept via_registry = requires(R& r, const K& key, const pid& p) {
  { r.register_name(key, p) } -> std::convertible_to<result<void>>;
  r.unregister_name(key);
  { r.whereis_name(key) } -> std::convertible_to<std::optional<pid>>;
};

/// A name held in a `via` registry: the registry (by reference; it must
/// outlive the name's uses) and a key. An exception thrown by the registry
/// becomes an error with code `registry_failed`.
class via_name {
public:
  template <class R, class K>
    requires via_registry<R, K>
  via_name(R& reg, K key) : impl_(std::make_shared<const model<R, K>>(reg, std::move(key))) {}

  /// Registers `p` under this name.
  [[nodiscard]] result<void> register_name(const pid& p) const { return impl_->register_name(p); }
  /// Removes this name from the registry.
  void unregister_name() const noexcept { impl_->unregister_name(); }
  /// Returns the process holding this name, if any.
  [[nodiscard]] result<std::optional<pid>> whereis() const { return impl_->whereis(); }
  /// Returns "via <key>", for messages.
  [[nodiscard]] std::string to_string() const { return "via " + impl_->describe(); }

private:
  struct concept_t {
    virtual ~concept_t() = default;
    [[nodiscard]] virtual result<void> register_name(const pid& p) const = 0;
    virtual void unregister_name() const noexcept = 0;
    [[nodiscard]] virtual result<std::optional<pid>> whereis() const = 0;
    [[nodiscard]] virtual std::string describe() const = 0;
  };

  template <class R, class K>
  struct model final : concept_t {
    R* reg;
    K key;
    model(R& r, K k) : reg(&r), key(std::move(k)) {}

    [[nodiscard]] error failed(const char* what, const std::exception& e) const {
      return error{errc::registry_failed, std::string(what) + " " + describe() + " threw: " + e.what()};
    }
    [[nodiscard]] result<void> register_name(const pid& p) const override {
      try {
        return reg->register_name(key, p);
      } catch (const std::exception& e) {
        return failed("registering", e);
      }
    }
    void unregister_name() const noexcept override {
      try {
        reg->unregister_name(key);
      } catch (...) {
        // Nothing to report to: the name's holder is going away anyway.
      }
    }
    [[nodiscard]] result<std::optional<pid>> whereis() const override {
      try {
        return std::optional<pid>(reg->whereis_name(key));
      } catch (const std::exception& e) {
        return failed("looking up", e);
      }
    }
    [[nodiscard]] std::string describe() const override {
      if constexpr (requires(std::ostream& os) { os << key; }) {
        std::ostringstream os;
        os << key;
        return "'" + os.str() + "'";
      } else {
        return "a key";
      }
    }
  };

  std::shared_ptr<const concept_t> impl_;
};

/// Returns the name `key` in the registry `reg` (OTP's {via, Module, Name}).
template <class R, class K>
  requires via_registry<R, K>
[[nodiscard]] via_name via(R& reg, K key) {
  return via_name(reg, std::move(key));
}

/// A name a server is registered under: local (a non-empty string) or `via`.
class server_name {
public:
  server_name(std::string local) : v_(std::move(local)) {} // NOLINT: implicit on purpose
  server_name(const char* local) : v_(std::string(local)) {} // NOLINT
  server_name(via_name v) : v_(std::move(v)) {} // NOLINT

  /// Returns the local name, or null for a `via` name.
  [[nodiscard]] const std::string* local() const noexcept { return std::get_if<std::string>(&v_); }
  /// Returns the `via` name, or null for a local name.
  [[nodiscard]] const otp::via_name* via() const noexcept { return std::get_if<otp::via_name>(&v_); }

  /// Registers `p` under this name in `n`.
  [[nodiscard]] result<void> register_name(node& n, const pid& p) const {
    if (const auto* l = local())
      return registry::of(n).register_name(*l, p);
    return std::get<otp::via_name>(v_).register_name(p);
  }
  /// Removes this name.
  void unregister_name(node& n) const noexcept {
    if (const auto* l = local())
      (void)registry::of(n).unregister_name(*l);
    else
      std::get<otp::via_name>(v_).unregister_name();
  }
  /// Returns the process holding this name in `n`, if any.
  [[nodiscard]] result<std::optional<pid>> whereis(node& n) const {
    if (const auto* l = local())
      return registry::of(n).whereis(*l);
    return std::get<otp::via_name>(v_).whereis();
  }
  /// Returns "'name'" or "via 'key'".
  [[nodiscard]] std::string to_string() const {
    if (const auto* l = local())
      return "'" + *l + "'";
    return std::get<otp::via_name>(v_).to_string();
  }

private:
  std::variant<std::string, otp::via_name> v_;
};

/// Where a message or a call goes: a pid, or a name resolved at the time.
class destination {
public:
  destination(const pid& p) : v_(p) {}                        // NOLINT: implicit on purpose
  destination(server_name n) : v_(std::move(n)) {}            // NOLINT
  destination(std::string local) : v_(server_name(std::move(local))) {} // NOLINT
  destination(const char* local) : v_(server_name(local)) {}  // NOLINT
  destination(via_name v) : v_(server_name(std::move(v))) {}  // NOLINT
  /// Any handle of a process that names its pid (a gen_server's server_ref).
  template <class T>
    requires requires(const T& t) {
      { t.pid() } -> std::convertible_to<pid>;
    }
  destination(const T& handle) : v_(pid(handle.pid())) {} // NOLINT

  /// Returns the pid, looking a name up in `n`; `noproc` if nobody holds it.
  [[nodiscard]] result<pid> resolve(node& n) const {
    if (const auto* p = std::get_if<pid>(&v_))
      return *p;
    const auto& name = std::get<server_name>(v_);
    auto found = name.whereis(n);
    if (!found)
      return found.error();
    if (!found.value())
      return error{errc::noproc, "no process is registered as " + name.to_string()};
    return *found.value();
  }
  /// Returns the pid, or the name as server_name::to_string prints it.
  [[nodiscard]] std::string to_string() const {
    if (const auto* p = std::get_if<pid>(&v_))
      return p->to_string();
    return std::get<server_name>(v_).to_string();
  }

private:
  std::variant<pid, server_name> v_;
};

/// Sends `value` to the process holding the `via` name (OTP's via send).
/// Fails with `noproc`, sending nothing, if nobody holds it.
template <class T>
result<void> send(const via_name& name, T&& value) {
  auto found = name.whereis();
  if (!found)
    return found.error();
  if (!found.value())
    return error{errc::noproc, "no process is registered as " + name.to_string()};
  send(*found.value(), std::forward<T>(value));
  return outcome::success();
}

} // namespace otp
