// SPDX-License-Identifier: Apache-2.0
// otp/crash_report.hpp - OTP's crash reports through otp::log: proc_lib's
// crash report for a process that ends abnormally, and what the behaviours
// need to write their own (gen_server's "terminating" report).
#pragma once

#include "otp/exit_reason.hpp"

#include <exception>
#include <string>
#include <typeinfo>

namespace otp {

/// Returns whether OTP reports a process that exits with `why`: any reason
/// but `normal`, `shutdown` and `{shutdown, _}` (proc_lib, gen_server).
[[nodiscard]] bool is_reported_exit(const exit_reason& why) noexcept;

namespace detail {

struct process;

/// Returns the readable name of a type ("kv::shard::get").
[[nodiscard]] std::string type_name(const std::type_info& t);

/// Logs proc_lib's crash report (domain "proc_lib", kind "crash_report")
/// for `p`, whose own code ended with `crash` escaping, i.e. with reason
/// `why`, if `why` is reported at all. Called by the scheduler before the
/// process's links and monitors are told. A process killed by an exit
/// signal runs no code of its own and gets no report, as in OTP.
void report_process_crash(const process& p, const std::exception_ptr& crash, const exit_reason& why) noexcept;

} // namespace detail

} // namespace otp
