// SPDX-License-Identifier: Apache-2.0
#include "behaviours/gen_server.hpp"

#include "otp/logger.hpp"

namespace otp {

namespace detail {

void report_unexpected_info(const pid& server) noexcept {
  // OTP's default handle_info logs a warning and drops the message.
  if (!log_enabled(log_level::warning))
    return;
  try {
    log(log_level::warning, "gen_server", "unexpected_message",
        "gen_server " + server.to_string() + " dropped a message its handle_info does not accept");
  } catch (...) {
  }
}

error init_failed(const pid& server, const exit_reason& why) {
  return error{errc::exited, "the init of " + server.to_string() + " failed: " + why.to_string(), why};
}

} // namespace detail

namespace gen_server {

task<result<void>> stop(destination to, exit_reason why, otp::timeout t) {
  auto target = to.resolve(detail::calling_node("gen_server::stop"));
  if (!target)
    co_return std::move(target).error();
  auto make = [&](const from<void>& f) {
    return detail::make_message<detail::system_msg>(
      detail::system_msg{detail::system_msg::kind::stop, why, f.tag(), f.caller()});
  };
  // The server never replies: its DOWN, with the reason it exited with, ends the wait.
  auto wait = detail::call_process<void>(target.value(), t, make);
  auto r = co_await wait;
  if (r)
    co_return outcome::success();
  if (r.error() == errc::exited && r.error().reason == why)
    co_return outcome::success();
  if (r.error() == errc::exited && why.is_normal() && r.error().reason.is_normal())
    co_return outcome::success();
  co_return std::move(r).error();
}

detail::call_awaiter<server_statistics> statistics(const destination& to, otp::timeout t) {
  auto target = to.resolve(detail::calling_node("gen_server::statistics"));
  if (!target)
    return detail::call_awaiter<server_statistics>(std::move(target).error());
  return detail::call_process<server_statistics>(target.value(), t, [](const from<server_statistics>& f) {
    return detail::make_message<detail::system_msg>(
      detail::system_msg{detail::system_msg::kind::statistics, {}, f.tag(), f.caller()});
  });
}

} // namespace gen_server

} // namespace otp
