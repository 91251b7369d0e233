// SPDX-License-Identifier: Apache-2.0
// otp/exit_reason.hpp - why a process exited, as links and monitors see it.
#pragma once

#include <cstdint>
#include <exception>
#include <iosfwd>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace otp {

/// Why a process exited (Erlang's exit reason term).
///
/// `normal`, `shutdown`, `{shutdown, Detail}`, `kill` (only ever a signal:
/// the target dies `killed`), `killed`, `noproc`, `noconnection`, a user
/// term (`error("badarg")`), or a crash that keeps an escaped exception's
/// type and `what()`. Cheap to copy: the common reasons hold no allocation.
class exit_reason {
public:
  enum class kind : std::uint8_t {
    normal,
    shutdown,
    kill,
    killed,
    noproc,
    noconnection,
    error,
    exception,
  };

  /// Constructs `normal`.
  exit_reason() noexcept = default;

  [[nodiscard]] static exit_reason normal() noexcept { return exit_reason{kind::normal}; }
  [[nodiscard]] static exit_reason shutdown() noexcept { return exit_reason{kind::shutdown}; }
  /// Returns `{shutdown, detail}`: a clean stop that carries information.
  [[nodiscard]] static exit_reason shutdown(std::string detail);
  /// Returns `kill`: as a signal sent with exit(), untrappable.
  [[nodiscard]] static exit_reason kill() noexcept { return exit_reason{kind::kill}; }
  [[nodiscard]] static exit_reason killed() noexcept { return exit_reason{kind::killed}; }
  [[nodiscard]] static exit_reason noproc() noexcept { return exit_reason{kind::noproc}; }
  [[nodiscard]] static exit_reason noconnection() noexcept { return exit_reason{kind::noconnection}; }
  /// Returns a user-defined reason, printed as the term itself.
  [[nodiscard]] static exit_reason error(std::string term);
  /// Returns a crash reason that keeps the exception's type and message.
  [[nodiscard]] static exit_reason exception(std::string type, std::string what);
  /// Returns the reason for an exception that escaped a process.
  [[nodiscard]] static exit_reason from_exception(const std::exception_ptr& e);

  [[nodiscard]] kind which() const noexcept { return kind_; }
  [[nodiscard]] bool is_normal() const noexcept { return kind_ == kind::normal; }
  [[nodiscard]] bool is_kill() const noexcept { return kind_ == kind::kill; }
  /// True for `shutdown` and `{shutdown, _}`.
  [[nodiscard]] bool is_shutdown() const noexcept { return kind_ == kind::shutdown; }
  /// True for the reasons a transient child is not restarted for.
  [[nodiscard]] bool is_normal_or_shutdown() const noexcept {
    return kind_ == kind::normal || kind_ == kind::shutdown;
  }
  /// Returns the shutdown detail, the error term, or the exception's what().
  [[nodiscard]] std::string_view detail() const noexcept;
  /// Returns the exception's type name for `kind::exception`, else empty.
  [[nodiscard]] std::string_view exception_type() const noexcept;

  /// Prints as Erlang would: `normal`, `{shutdown,db_gone}`, `killed`,
  /// `{exception,std::runtime_error,"boom"}`.
  [[nodiscard]] std::string to_string() const;

  friend bool operator==(const exit_reason& a, const exit_reason& b) noexcept;

private:
  struct payload {
    std::string type;
    std::string text;
  };
  explicit exit_reason(kind k) noexcept : kind_(k) {}
  exit_reason(kind k, std::shared_ptr<const payload> p) noexcept
    : payload_(std::move(p)), kind_(k) {}

  std::shared_ptr<const payload> payload_;
  kind kind_ = kind::normal;
};

std::ostream& operator<<(std::ostream& os, const exit_reason& r);

/// Thrown by otp::exit(reason) to end the calling process with `reason`.
///
/// Like erlang:exit/1 it can be caught, but a process should let it escape.
class exit_exception : public std::exception {
public:
  explicit exit_exception(exit_reason r) : reason_(std::move(r)) {}
  [[nodiscard]] const exit_reason& reason() const noexcept { return reason_; }
  [[nodiscard]] const char* what() const noexcept override { return "otp::exit_exception"; }

private:
  exit_reason reason_;
};

} // namespace otp
