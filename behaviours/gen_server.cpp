// SPDX-License-Identifier: Apache-2.0
#include "behaviours/gen_server.hpp"

#include "otp/crash_report.hpp"
#include "otp/logger.hpp"

#include <string>
#include <vector>

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

namespace {

std::string server_label(const pid& server, const std::string& name) {
  return name.empty() ? server.to_string() : name + " (" + server.to_string() + ")";
}

} // namespace

void refuse_request(const gs_request& r, const pid& server, const std::string& name,
                    const std::type_info& mine) noexcept {
  try {
    const gs_request_info& i = *r.info;
    const std::string module = type_name(mine);
    const std::string meant_for = type_name(*i.module_type);
    std::string what;
    switch (i.kind) {
      case gs_kind::call: what = "a call of " + type_name(*i.request_type); break;
      case gs_kind::cast: what = "a cast of " + type_name(*i.request_type); break;
      case gs_kind::get_state: what = "a get_state"; break;
    }
    const std::string text = "gen_server " + server_label(server, name) + " of module " + module + " refused " + what
                             + " made for module " + meant_for
                             + ": a request of another module's protocol (a ref or a name of the wrong type?)";
    const gs_reply_address* to = i.reply_address(r);
    if (to != nullptr)
      deliver(to->caller, make_reply<call_refusal>(to->tag, call_refusal{error{errc::bad_request, text}}));
    std::vector<log_field> fields{
      {"server", name.empty() ? server.to_string() : name},
      {"module", module},
      {"request", i.kind == gs_kind::get_state ? std::string("get_state") : type_name(*i.request_type)},
      {"kind", i.kind == gs_kind::call ? "call" : i.kind == gs_kind::cast ? "cast" : "get_state"},
      {"meant_for", meant_for},
    };
    if (to != nullptr)
      fields.push_back({"caller", to->caller.to_string()});
    log(log_level::error, "gen_server", "bad_request", text, std::move(fields));
  } catch (...) {
  }
}

void report_terminate(const pid& server, const std::string& name, const gs_last_message& last,
                      const std::string* state, const exit_reason& why) noexcept {
  if (!is_reported_exit(why) || !log_enabled(log_level::error))
    return;
  try {
    using kind = gs_last_message::kind_t;
    const std::string type = last.type ? type_name(*last.type) : std::string("a message");
    // OTP's shapes of the last message: the request of a call, {'$gen_cast', Req}, the info message...
    std::string message;
    switch (last.kind) {
      case kind::none: message = "none"; break;
      case kind::call: message = type; break;
      case kind::cast: message = "{'$gen_cast'," + type + "}"; break;
      case kind::get_state: message = "get_state"; break;
      case kind::info: message = type; break;
      case kind::timeout: message = "timeout"; break;
      case kind::continue_with: message = "{continue," + type + "}"; break;
      case kind::parent_exit: message = "{'EXIT'," + last.from.to_string() + "," + last.reason.to_string() + "}"; break;
      case kind::stop: message = "gen_server::stop"; break;
    }
    std::vector<log_field> fields{{"name", name.empty() ? server.to_string() : name}, {"last_message", message}};
    if (state)
      fields.push_back({"state", *state});
    fields.push_back({"reason", why.to_string()});
    if (last.kind == kind::call)
      fields.push_back({"client", last.from.to_string()});
    // The layout of OTP's report.
    std::string text = "** Generic server " + fields[0].value + " terminating\n";
    text += "** Last message in was " + message + "\n";
    if (state)
      text += "** When Server state == " + *state + "\n";
    text += "** Reason for termination ==\n** " + why.to_string();
    if (last.kind == kind::call)
      text += "\n** Client " + last.from.to_string();
    log(log_level::error, "gen_server", "terminate", std::move(text), std::move(fields));
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
