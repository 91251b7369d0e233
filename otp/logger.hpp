// SPDX-License-Identifier: Apache-2.0
// otp/logger.hpp - where the runtime's reports go (OTP's logger, reduced to a
// handler): supervisor reports, crash reports, dropped messages.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace otp {

/// The severity of a report (OTP logger's levels, less the rarely used ones).
enum class log_level : unsigned char { debug, info, notice, warning, error, critical, none };

/// One field of a report, as data: OTP's report keys ("supervisor",
/// "errorContext", "reason", "offender.pid", "offender.id", ...).
struct log_field {
  std::string key;
  std::string value;
};

/// One report. `domain` says who reports ("supervisor", "gen_server",
/// "proc_lib"), `kind` what happened (OTP's errorContext: "child_terminated",
/// "start_error", "shutdown_error", "reached_max_restart_intensity",
/// "crash_report", ...), `text` the whole report as the default handler
/// prints it, and `fields` the same report as data, in print order.
struct log_event {
  log_level level = log_level::info;
  std::string_view domain;
  std::string_view kind;
  std::string text;
  std::vector<log_field> fields;

  /// Returns the value of the field `key`, or nullptr if the report has none.
  [[nodiscard]] const std::string* field(std::string_view key) const noexcept {
    for (const auto& f : fields)
      if (f.key == key)
        return &f.value;
    return nullptr;
  }
};

using log_handler = std::function<void(const log_event&)>;

/// Sends every report at or above the log level to `h` instead of the
/// default handler, which writes through spdlog's default logger (stderr).
/// An empty handler restores the default. Safe from any thread.
void set_log_handler(log_handler h);

/// Drops reports below `min` (default: notice; log_level::none drops all).
void set_log_level(log_level min) noexcept;

/// Returns whether a report at `level` would be passed on.
[[nodiscard]] bool log_enabled(log_level level) noexcept;

/// Passes a report to the handler if its level is enabled. Never throws: a
/// handler that throws loses that report.
void log(log_level level, std::string_view domain, std::string_view kind, std::string text,
         std::vector<log_field> fields = {}) noexcept;

} // namespace otp
