// SPDX-License-Identifier: Apache-2.0
#include "behaviours/gen_server.hpp"

#include "otp/crash_report.hpp"
#include "otp/logger.hpp"

#include <algorithm>
#include <chrono>
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

task<void> gs_core::run(from<init_ack> starter, std::optional<server_name> name,
                        gs_init_step (*init)(gs_core& s, void* init_args), void* init_args) {
  process& me = require_process("gen_server");
  node& n = me.home()->owner();
  // Registered before init, so that of two concurrent starts one wins.
  if (name) {
    name_ = name->to_string();
    if (auto r = name->register_name(n, me.self()); !r) {
      otp::unlink(ctx_.parent_);
      otp::reply(starter, init_ack{r.error()});
      co_return;
    }
  }
  std::exception_ptr init_crash;
  std::optional<init_result> ir;
  try {
    gs_init_step step = init(*this, init_args);
    if (step.pending)
      ir = co_await std::move(*step.pending);
    else
      ir = std::move(step.done);
  } catch (...) {
    init_crash = std::current_exception();
  }
  if (init_crash || ir->outcome() != init_result::outcome_t::ok) {
    // OTP: the name goes first, then the caller hears, then the exit.
    if (name)
      name->unregister_name(n);
    otp::unlink(ctx_.parent_);
    if (ir && ir->outcome() == init_result::outcome_t::ignore) {
      otp::reply(starter, init_ack{error{errc::ignored, me.self().to_string() + " ignored its start"}});
      co_return;
    }
    const exit_reason why = init_crash ? exit_reason::from_exception(init_crash) : ir->reason();
    otp::reply(starter, init_ack{init_failed(me.self(), why)});
    if (why.is_normal())
      co_return;
    otp::exit(why);
  }
  otp::reply(starter, init_ack{});

  // The loop, in this frame: a start costs one coroutine frame, not two.
  for (;;) {
    // A stop asked for by the last callback (or by init, through the context).
    if (ctx_.stop_) {
      const exit_reason why = *ctx_.stop_;
      std::exception_ptr in_terminate;
      try {
        co_await run_terminate(why);
      } catch (...) {
        in_terminate = std::current_exception();
      }
      // OTP: terminate runs in a `try ... after reply`.
      if (pending_reply_)
        deliver(pending_to_, pending_reply_.release());
      if (in_terminate) {
        report(exit_reason::from_exception(in_terminate));
        std::rethrow_exception(in_terminate);
      }
      report(why);
      if (why.is_normal())
        co_return;
      otp::exit(why);
    }
    std::exception_ptr crash;
    try {
      if (ctx_.continue_) {
        message_ptr c = std::move(ctx_.continue_);
        ctx_.timeout_.reset();
        if (auto t = ops_->continue_with(*this, c))
          co_await std::move(*t);
      } else {
        message_ptr m;
        const auto armed = ctx_.timeout_;
        if (ctx_.timeout_) {
          const auto d = *ctx_.timeout_;
          ctx_.timeout_.reset();
          m = co_await receive_any_for(d);
        } else {
          m = co_await receive_any();
        }
        // OTP: a system message (get_state, statistics) or a refused
        // request reaches no callback, and the wait after it has the same
        // timeout again, whole (sys's system_continue re-enters the loop
        // with its Time).
        if (armed && m != nullptr && is_system(m))
          ctx_.timeout_ = armed;
        bool timed_call = false;
        const auto started = timing_ ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
        if (auto t = dispatch(m, timed_call))
          co_await std::move(*t);
        if (timed_call) {
          const auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started);
          stats_.call_time_total += took;
          stats_.call_time_max = std::max(stats_.call_time_max, took);
        }
        // A server whose mailbox never empties would not suspend: it lets
        // the processes of its scheduler run every so often, as the
        // BEAM's reduction count does (its clients may share its core),
        // without offering itself to another core (they talk to it).
        if (++handled_since_yield_ == fair_share) {
          handled_since_yield_ = 0;
          co_await detail::yield_awaiter{.stay = true};
        }
      }
    } catch (...) {
      crash = std::current_exception();
    }
    ctx_.call_.reset();
    if (crash) {
      // OTP calls terminate for a crash in a callback, then exits with it.
      std::exception_ptr in_terminate;
      try {
        co_await run_terminate(exit_reason::from_exception(crash));
      } catch (...) {
        in_terminate = std::current_exception();
      }
      report(exit_reason::from_exception(in_terminate ? in_terminate : crash));
      std::rethrow_exception(in_terminate ? in_terminate : crash);
    }
  }
}

void gs_core::finish_reply(const pid& caller, message* reply) noexcept {
  ctx_.call_.reset();
  if (reply == nullptr)
    return;
  if (ctx_.stop_) {
    pending_reply_.reset(reply);
    pending_to_ = caller;
  } else {
    deliver(caller, reply);
  }
}

void gs_core::unexpected() noexcept {
  ++stats_.unexpected;
  report_unexpected_info(ctx_.self_);
}

// Whether `m` is handled by the loop itself, without a callback.
bool gs_core::is_system(const message_ptr& m) const noexcept {
  if (m->type == ops_->request_tag)
    return static_cast<const gs_request*>(m.get())->info->kind == gs_kind::get_state;
  return (m->flags & item_flag_request) != 0 || m->type == tag_of<system_msg>();
}

// Takes one message (or the idle timeout) and hands it to its callback.
std::optional<task<void>> gs_core::dispatch(message_ptr& m, bool& timed_call) {
  using last_kind = gs_last_message::kind_t;
  if (m == nullptr) {
    last_.note(last_kind::timeout, nullptr);
    message_ptr t(make_message<idle_timeout>());
    return ops_->info(*this, t);
  }
  if (m->type == ops_->request_tag) {
    auto* r = static_cast<gs_request*>(m.get());
    static constexpr last_kind kinds[] = {last_kind::call, last_kind::cast, last_kind::get_state};
    last_.note(kinds[static_cast<int>(r->info->kind)], r->info->request_type);
    timed_call = timing_ && r->info->kind == gs_kind::call;
    return r->info->run(*r, *this);
  }
  if ((m->flags & item_flag_request) != 0) { // another module's request
    ++stats_.refused;
    refuse_request(*static_cast<gs_request*>(m.get()), ctx_.self_, name_, *ops_->module_type);
    return std::nullopt;
  }
  if (m->type == tag_of<system_msg>()) {
    auto& s = payload<system_msg>(m.get());
    switch (s.what) {
      case system_msg::kind::stop:
        last_.note(last_kind::stop, nullptr);
        ctx_.stop_ = s.reason;
        break;
      case system_msg::kind::statistics:
        deliver(s.caller, make_reply<server_statistics>(s.tag, stats_));
        break;
    }
    return std::nullopt;
  }
  // OTP: an exit signal from the parent, trapped, stops the server.
  if (m->type == tag_of<exit_msg>() && payload<exit_msg>(m.get()).from == ctx_.parent_) {
    ctx_.stop_ = payload<exit_msg>(m.get()).reason;
    last_.note(last_kind::parent_exit, nullptr);
    last_.from = ctx_.parent_;
    last_.reason = *ctx_.stop_;
    return std::nullopt;
  }
  last_.note(last_kind::info, nullptr);
  return ops_->info(*this, m);
}

// Runs terminate (if the module has it) for a server about to exit with
// `why`; a crash in terminate replaces the reason.
task<void> gs_core::run_terminate(exit_reason why) {
  if (ops_->terminate != nullptr) {
    if (auto t = ops_->terminate(*this, why))
      co_await std::move(*t);
  }
}

// OTP's "** Generic server X terminating" report, for an abnormal `why`.
void gs_core::report(const exit_reason& why) noexcept {
  if (!is_reported_exit(why))
    return;
  std::optional<std::string> state;
  if (ops_->print != nullptr) {
    try {
      ops_->print(*this, state.emplace());
    } catch (...) {
      state.reset(); // unprintable now: the report goes without it
    }
  }
  report_terminate(ctx_.self_, name_, last_, state ? &*state : nullptr, why);
}


result<pid> spawn_server(process& me, const gen_server::start_options& o, monitor_ref ref, task<void> frame) {
  // Armed before the spawn: the reply may come from another scheduler at once.
  arm_call(me, ref);
  spawn_result sr;
  try {
    sr = spawn_frame(&me.home()->owner(), {.scheduler = o.scheduler, .link = o.link, .monitor_as = ref},
                     frame.release());
  } catch (...) {
    abandon_call(me, ref);
    throw;
  }
  if (!sr.pid) {
    abandon_call(me, ref);
    return error{errc::node_stopped, "gen_server::start: the node is shutting down"};
  }
  return sr.pid;
}

result<pid> started_server(const pid& server, result<init_ack> ack) {
  if (!ack) {
    if (ack.error() == errc::timeout) {
      // Unlinked first, so that the kill does not reach the caller.
      otp::unlink(server);
      otp::exit(server, exit_reason::kill());
    }
    return std::move(ack).error();
  }
  if (ack.value().failure)
    return std::move(*ack.value().failure);
  return server;
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
