// SPDX-License-Identifier: Apache-2.0
#include "otp/crash_report.hpp"

#include "otp/detail/runtime.hpp"
#include "otp/logger.hpp"

#include <cxxabi.h>

#include <cstdlib>
#include <memory>
#include <vector>

namespace otp {

bool is_reported_exit(const exit_reason& why) noexcept { return !why.is_normal() && !why.is_shutdown(); }

namespace detail {

std::string type_name(const std::type_info& t) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(t.name(), nullptr, nullptr, &status), &std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(t.name());
}

namespace {

// OTP's exception class: `exit` for otp::exit(reason), `error` for an exception.
const char* exception_class(const std::exception_ptr& crash) noexcept {
  try {
    std::rethrow_exception(crash);
  } catch (const exit_exception&) {
    return "exit";
  } catch (...) {
    return "error";
  }
}

std::string pid_list(const std::vector<pid>& pids) {
  std::string out = "[";
  for (std::size_t i = 0; i < pids.size(); ++i)
    out += (i == 0 ? "" : ",") + pids[i].to_string();
  return out + "]";
}

} // namespace

void report_process_crash(const process& p, const std::exception_ptr& crash, const exit_reason& why) noexcept {
  if (!is_reported_exit(why) || !log_enabled(log_level::error))
    return;
  try {
    const otp::process_info info = snapshot(p);
    const std::string cls = crash ? exception_class(crash) : "exit";
    std::vector<log_field> fields{
      {"pid", info.pid.to_string()},
      {"reason", why.to_string()},
      {"class", cls},
      {"message_queue_len", std::to_string(info.message_queue_len)},
      {"links", pid_list(info.links)},
      {"trap_exit", info.trap_exit ? "true" : "false"},
    };
    // The layout of OTP's =CRASH REPORT====.
    std::string text = "  crasher:\n";
    text += "    pid: " + fields[0].value + "\n";
    text += "    exception " + cls + ": " + fields[1].value + "\n";
    text += "    message_queue_len: " + fields[3].value + "\n";
    text += "    links: " + fields[4].value + "\n";
    text += "    trap_exit: " + fields[5].value;
    log(log_level::error, "proc_lib", "crash_report", std::move(text), std::move(fields));
  } catch (...) {
    // A report must never take the scheduler down.
  }
}

} // namespace detail

} // namespace otp
