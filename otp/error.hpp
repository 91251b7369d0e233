// SPDX-License-Identifier: Apache-2.0
// otp/error.hpp - error codes and results at API boundaries.
#pragma once

#include "otp/exit_reason.hpp"

#include <boost/outcome/std_result.hpp>

#include <string>
#include <system_error>

namespace otp {

namespace outcome = BOOST_OUTCOME_V2_NAMESPACE;

/// Runtime error conditions (cf. asio::error::misc_errors, caf::sec).
enum class errc {
  noproc = 1,        ///< the process does not exist (dead or never was)
  timeout,           ///< the operation did not complete in time
  already_started,   ///< a name or process is already taken
  calling_self,      ///< a process tried to call itself
  not_in_process,    ///< the function needs a calling process (self())
  invalid_argument,  ///< an argument is out of range or malformed
  node_stopped,      ///< the node is shutting down or gone
  invalid_child_spec,///< a child specification failed validation
  exited,            ///< the process exited; error::reason says why
  ignored,           ///< the process's init chose not to start (OTP's `ignore`)
  registry_failed,   ///< a `via` registry failed (threw) while resolving or registering
  not_found,         ///< no such child (or other named entity)
  running,           ///< the child is running (it must be terminated first)
  bad_request,       ///< the server refused a request it does not handle (another module's protocol)
};

[[nodiscard]] const std::error_category& otp_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), otp_category()};
}

/// An error code plus context, e.g. "scheduler 7 does not exist (node has 2)".
/// For `exited`, `reason` is the exit reason of the process concerned.
struct error {
  std::error_code code;
  std::string context;
  exit_reason reason;

  error() = default;
  error(errc e, std::string ctx = {}) : code(make_error_code(e)), context(std::move(ctx)) {}
  error(std::error_code c, std::string ctx = {}) : code(c), context(std::move(ctx)) {}
  error(errc e, std::string ctx, exit_reason why)
    : code(make_error_code(e)), context(std::move(ctx)), reason(std::move(why)) {}

  /// Returns "message: context".
  [[nodiscard]] std::string message() const;
  friend bool operator==(const error& e, errc c) noexcept { return e.code == make_error_code(c); }
};

// ADL hooks (Outcome's payload convention): acts as an error_code, and
// .value() on a failed result throws system_error carrying the context.
inline const std::error_code& make_error_code(const error& e) noexcept { return e.code; }
[[noreturn]] void outcome_throw_as_system_error_with_payload(const error& e);

template <class T>
using result = outcome::std_result<T, error>;

} // namespace otp

template <>
struct std::is_error_code_enum<otp::errc> : std::true_type {};
