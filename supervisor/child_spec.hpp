// SPDX-License-Identifier: Apache-2.0
// supervisor/child_spec.hpp - what a supervisor knows about a child, and its flags.
#pragma once

#include "otp/call.hpp"
#include "otp/error.hpp"
#include "otp/exit_reason.hpp"
#include "otp/pid.hpp"
#include "otp/task.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <vector>

namespace otp {

/// When a child is restarted (OTP's restart types).
enum class restart_type : std::uint8_t {
  permanent, ///< always, even after `normal`
  transient, ///< only after an abnormal exit (not normal, shutdown, {shutdown,_})
  temporary, ///< never; its spec is removed when it exits
};

/// Whether a child is a worker or a supervisor (only the default shutdown differs).
enum class child_type : std::uint8_t { worker, supervisor };

/// Which children a supervisor restarts when one exits.
enum class strategy : std::uint8_t {
  one_for_one,  ///< only the one that exited
  one_for_all,  ///< all of them
  rest_for_one, ///< the one that exited and those started after it
};

/// When the exit of significant children stops the supervisor.
enum class auto_shutdown : std::uint8_t { never, any_significant, all_significant };

/// How a child is stopped: `brutal_kill`, `shutdown` then `kill` after a
/// timeout, or `shutdown` with no limit (`infinity`).
class shutdown_policy {
public:
  /// `exit(child, shutdown)`, then `kill` if it is not gone after `timeout`.
  shutdown_policy(std::chrono::milliseconds timeout) : ms_(timeout.count()) {} // NOLINT: implicit on purpose
  /// `exit(child, shutdown)`, and wait as long as it takes (`otp::infinity`).
  constexpr shutdown_policy(infinity_t) noexcept : kind_(kind::unlimited) {} // NOLINT: implicit on purpose
  [[nodiscard]] static shutdown_policy brutal_kill() noexcept { return shutdown_policy(kind::brutal); }

  [[nodiscard]] bool is_brutal_kill() const noexcept { return kind_ == kind::brutal; }
  [[nodiscard]] bool is_infinity() const noexcept { return kind_ == kind::unlimited; }
  [[nodiscard]] std::chrono::milliseconds timeout() const noexcept { return std::chrono::milliseconds(ms_); }
  /// Returns "brutal_kill", "infinity" or the milliseconds.
  [[nodiscard]] std::string to_string() const;

private:
  enum class kind : std::uint8_t { limited, brutal, unlimited };
  explicit shutdown_policy(kind k) noexcept : kind_(k) {}
  std::int64_t ms_ = 0;
  kind kind_ = kind::limited;
};

/// Starts a child, linked to the calling process (the supervisor), and
/// returns its pid once it is ready (OTP's start function: start_link
/// semantics). An error `ignored` is OTP's `ignore`; any other error fails
/// the start.
using start_fn = std::function<task<result<pid>>()>;

/// A child of a supervisor (OTP's child_spec map). Defaults are here, in the
/// member initialisers.
struct child_spec {
  std::string id;                  ///< unique among its siblings; mandatory
  start_fn start;                  ///< mandatory
  restart_type restart = restart_type::permanent;
  /// Empty: 5000 ms for a worker, infinity for a supervisor.
  std::optional<shutdown_policy> shutdown{};
  child_type type = child_type::worker;
  /// Its exit may stop the supervisor (see auto_shutdown); not for permanent children.
  bool significant = false;

  /// Returns the shutdown policy, with the default for its type.
  [[nodiscard]] shutdown_policy shutdown_or_default() const {
    return shutdown ? *shutdown : default_shutdown(type);
  }

  /// The default shutdown: 5000 ms for a worker, infinity for a supervisor.
  [[nodiscard]] static shutdown_policy default_shutdown(child_type t) {
    return t == child_type::supervisor ? shutdown_policy(otp::infinity)
                                       : shutdown_policy(std::chrono::milliseconds(5000));
  }
};

/// Returns whether a child stopped with `how` ended as expected; OTP's
/// shutdown/2 reports a shutdown_error otherwise. Case by case as OTP 25:
/// after `brutal_kill`, `killed`; after a `shutdown` signal, `shutdown`
/// (a `killed` after the timeout is an error). A non-permanent child may
/// also have ended `normal`, `shutdown` or `{shutdown,_}` on its own first,
/// under either policy; a permanent child may not (for it, even
/// `{shutdown,_}` or, after brutal_kill, `shutdown` is reported).
[[nodiscard]] inline bool clean_shutdown(const shutdown_policy& how, restart_type r, const exit_reason& why) noexcept {
  if (r != restart_type::permanent && why.is_normal_or_shutdown())
    return true;
  if (how.is_brutal_kill())
    return why.which() == exit_reason::kind::killed;
  return why == exit_reason::shutdown(); // plain `shutdown`, not {shutdown,_}
}

/// A supervisor's flags (OTP's sup_flags map).
struct supervisor_flags {
  otp::strategy strategy = strategy::one_for_one;
  /// More than `intensity` restarts within `period` stop the supervisor.
  int intensity = 1;
  std::chrono::seconds period{5};
  otp::auto_shutdown auto_shutdown = auto_shutdown::never;
};

/// Checks one spec for a supervisor whose auto_shutdown is `as` (OTP's
/// check_childspec); the error names the child and the field. A
/// significant child needs an auto_shutdown other than `never`.
[[nodiscard]] result<void> check_child_spec(const child_spec& spec, otp::auto_shutdown as);
/// Checks the flags (OTP's check_flags).
[[nodiscard]] result<void> check_flags(const supervisor_flags& flags);
/// Checks every spec and that ids are unique (OTP's check_startspec).
[[nodiscard]] result<void> check_child_specs(const std::vector<child_spec>& specs, otp::auto_shutdown as);
/// Checks the `significant` flag of child `id` (OTP's validSignificant).
[[nodiscard]] result<void> check_significant(const std::string& id, bool significant, restart_type r,
                                             otp::auto_shutdown as);

/// Supervisor answers that have no counterpart among otp::errc. Compare
/// with `r.error() == otp::sup_errc::restarting`.
enum class sup_errc {
  /// The child waits for a restart retry after a failed restart (OTP's
  /// `{error, restarting}` from restart_child and delete_child).
  restarting = 1,
  /// The request has no meaning for a dynamic supervisor (OTP's
  /// `{error, simple_one_for_one}`): children by id, restart_child, delete_child.
  simple_one_for_one,
};

[[nodiscard]] const std::error_category& sup_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(sup_errc e) noexcept {
  return {static_cast<int>(e), sup_category()};
}

[[nodiscard]] inline bool operator==(const error& e, sup_errc c) noexcept { return e.code == make_error_code(c); }

/// Returns whether a child that exited with `why` is restarted (OTP's do_restart).
[[nodiscard]] constexpr bool must_restart(restart_type r, const exit_reason& why) noexcept {
  switch (r) {
    case restart_type::permanent: return true;
    case restart_type::temporary: return false;
    case restart_type::transient: return !why.is_normal_or_shutdown();
  }
  return false;
}

[[nodiscard]] const char* to_string(restart_type r) noexcept;
[[nodiscard]] const char* to_string(strategy s) noexcept;

} // namespace otp

template <>
struct std::is_error_code_enum<otp::sup_errc> : std::true_type {};
