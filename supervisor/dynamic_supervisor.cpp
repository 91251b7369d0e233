// SPDX-License-Identifier: Apache-2.0
#include "supervisor/dynamic_supervisor.hpp"

#include "otp/logger.hpp"

#include <boost/outcome/try.hpp>

#include <algorithm>

namespace otp::detail {

dyn_sup_module::dyn_sup_module(dynamic_supervisor_flags flags, dyn_template spec, std::string name)
  : flags_(flags), spec_(std::move(spec)), window_(flags.intensity, flags.period), name_(std::move(name)) {}

void dyn_sup_module::init(context& ctx) {
  otp::trap_exit(true);
  if (name_.empty())
    name_ = ctx.self().to_string();
}

task<result<pid>> dyn_sup_module::handle_call(context&, start_req req) {
  if (req.args.type() != *spec_.args_type) {
    // A ref rebuilt from a pid with other types: refused before anything runs.
    std::string text = "dynamic supervisor " + name_ + " refused start_child: its children take "
                       + type_name(*spec_.args_type) + ", the request gave " + type_name(req.args.type())
                       + " (a dynamic_supervisor_ref of the wrong type?)";
    try {
      log(log_level::error, "supervisor", "bad_request", text,
          {{"supervisor", name_}, {"takes", type_name(*spec_.args_type)}, {"given", type_name(req.args.type())}});
    } catch (...) {
    }
    co_return error{errc::bad_request, std::move(text)};
  }
  if (flags_.max_children && children_.size() + retrying_.size() >= *flags_.max_children)
    co_return error{errc::invalid_argument, "dynamic supervisor " + name_ + " has max_children ("
                                              + std::to_string(*flags_.max_children) + ") children"};
  auto r = co_await start(req.args);
  if (!r)
    co_return std::move(r).error();
  children_.emplace(r.value(), std::move(req.args));
  co_return r.value();
}

// OTP: ok for a child, for a child waiting for a restart retry (the retry
// is dropped) and for any pid no longer alive; not_found for a live stranger.
task<result<void>> dyn_sup_module::handle_call(context&, terminate_req req) {
  if (children_.contains(req.child)) {
    std::vector<pid> one{req.child};
    co_await shut_down(one);
    children_.erase(req.child);
    co_return outcome::success();
  }
  for (auto it = retrying_.begin(); it != retrying_.end(); ++it) {
    if (it->second.old == req.child) {
      retrying_.erase(it);
      co_return outcome::success();
    }
  }
  auto probing = otp::get_process_info(req.child);
  if (auto alive = co_await probing; alive)
    co_return error{errc::not_found, req.child.to_string() + " is not a child of " + name_};
  co_return outcome::success();
}

std::vector<child_info> dyn_sup_module::handle_call(context&, which_req) { return which(); }

child_counts dyn_sup_module::handle_call(context&, count_req) { return counts(); }

task<void> dyn_sup_module::handle_info(context& ctx, info m) {
  if (auto* e = std::get_if<exit_msg>(&m)) {
    co_await child_exited(ctx, *e);
  } else if (auto* again = std::get_if<retry>(&m)) {
    auto found = retrying_.find(again->key);
    if (found == retrying_.end())
      co_return; // terminate_child dropped it
    waiting w = std::move(found->second);
    retrying_.erase(found);
    co_await restart(ctx, std::move(w.args), w.old, true);
  } else {
    answer_generic(m);
  }
}

// Children stop all at once, with one shared timeout (docs/otp_semantics.md 2).
task<void> dyn_sup_module::terminate(context&, const exit_reason&) {
  std::vector<pid> all;
  for (const auto& [p, args] : children_)
    all.push_back(p);
  co_await shut_down(all);
  children_.clear();
  retrying_.clear();
}

// supervisor::* on a dynamic supervisor: OTP's answers for simple_one_for_one.
void dyn_sup_module::answer_generic(info& m) {
  const std::string why = "dynamic supervisor " + name_ + ": children have no ids here (simple_one_for_one)";
  if (auto* s = std::get_if<sup_start_req>(&m))
    otp::reply(s->to, error{sup_errc::simple_one_for_one, why + "; start them with dynamic_supervisor::start_child"});
  else if (auto* t = std::get_if<sup_terminate_req>(&m))
    otp::reply(t->to, error{sup_errc::simple_one_for_one, why + "; terminate them by pid"});
  else if (auto* r = std::get_if<sup_restart_req>(&m))
    otp::reply(r->to, error{sup_errc::simple_one_for_one, why});
  else if (auto* d = std::get_if<sup_delete_req>(&m))
    otp::reply(d->to, error{sup_errc::simple_one_for_one, why});
  else if (auto* w = std::get_if<sup_which_req>(&m))
    otp::reply(w->to, which());
  else if (auto* c = std::get_if<sup_count_req>(&m))
    otp::reply(c->to, counts());
}

std::vector<child_info> dyn_sup_module::which() const {
  std::vector<child_info> out;
  for (const auto& [p, args] : children_)
    out.push_back(child_info{spec_.id, p, spec_.type, false});
  for (std::size_t i = 0; i < retrying_.size(); ++i)
    out.push_back(child_info{spec_.id, std::nullopt, spec_.type, true});
  return out;
}

child_counts dyn_sup_module::counts() const {
  const std::size_t n = children_.size() + retrying_.size();
  child_counts c{.specs = 1, .active = children_.size()};
  (spec_.type == child_type::supervisor ? c.supervisors : c.workers) = n;
  return c;
}

task<void> dyn_sup_module::child_exited(context& ctx, const exit_msg& e) {
  auto found = children_.find(e.from);
  if (found == children_.end())
    co_return; // not ours: ignored, as OTP does
  dyn_args args = std::move(found->second);
  children_.erase(found);
  const bool again = must_restart(spec_.restart, e.reason);
  if (again || !e.reason.is_normal_or_shutdown())
    report("child_terminated", e.reason.to_string(), e.from.to_string());
  if (again) {
    co_await restart(ctx, std::move(args), e.from, false);
    co_return;
  }
  // OTP's do_auto_shutdown: only a significant child's own exit counts.
  if (!spec_.significant)
    co_return;
  if (flags_.auto_shutdown == auto_shutdown::any_significant
      || (flags_.auto_shutdown == auto_shutdown::all_significant && children_.empty() && retrying_.empty()))
    ctx.stop(exit_reason::shutdown());
}

// Counts the restart and starts the child again from `args`. `old` is the
// pid it had; reports name it, as `{restarting,Old}` on a retry.
task<void> dyn_sup_module::restart(context& ctx, dyn_args args, pid old, bool is_retry) {
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(this_scheduler().now().time_since_epoch());
  if (!window_.add(now.count())) {
    report("reached_max_restart_intensity", "reached_max_restart_intensity", pid_term(old, is_retry), "shutdown");
    ctx.stop(exit_reason::shutdown());
    co_return;
  }
  auto r = co_await start(args);
  if (r) {
    children_.emplace(r.value(), std::move(args));
  } else if (r.error() != errc::ignored) {
    report("start_error", start_reason(r.error()), pid_term(old, is_retry));
    const std::uint64_t key = ++next_key_;
    retrying_.emplace(key, waiting{old, std::move(args)});
    otp::send(ctx.self(), retry{key}); // counted again when retried
  }
}

// The start function gets copies of the arguments: a restart starts from them again.
task<result<pid>> dyn_sup_module::start(const dyn_args& args) {
  std::exception_ptr crash;
  result<pid> r = error{errc::invalid_argument};
  try {
    auto starting = spec_.start(args.values());
    r = co_await starting;
  } catch (...) {
    crash = std::current_exception();
  }
  if (crash)
    co_return error{errc::exited, "the start function of '" + spec_.id + "' threw", exit_reason::from_exception(crash)};
  co_return r;
}

shutdown_policy dyn_sup_module::shutdown_policy_of() const {
  return spec_.shutdown ? *spec_.shutdown : child_spec::default_shutdown(spec_.type);
}

// Stops `targets` together. As OTP, an unexpected exit is reported per
// child when one is stopped, and per reason with the count when many are.
task<void> dyn_sup_module::shut_down(std::vector<pid> targets) {
  const shutdown_policy sp = shutdown_policy_of();
  const bool one = targets.size() == 1;
  auto stopping = detail::shut_down(std::move(targets), sp);
  const auto ended = co_await stopping;
  std::vector<std::pair<std::string, std::size_t>> by_reason;
  for (const auto& [p, why] : ended) {
    if (clean_shutdown(sp, spec_.restart, why))
      continue;
    if (one) {
      report("shutdown_error", why.to_string(), p.to_string());
      continue;
    }
    const std::string text = why.to_string();
    auto it = std::find_if(by_reason.begin(), by_reason.end(), [&](const auto& r) { return r.first == text; });
    if (it == by_reason.end())
      by_reason.emplace_back(text, 1);
    else
      ++it->second;
  }
  for (const auto& [why, n] : by_reason)
    report("shutdown_error", why, {}, {}, n);
}

void dyn_sup_module::report(std::string_view kind, std::string reason, std::string offender_pid,
                            std::string_view context, std::optional<std::size_t> nb_children) const {
  detail::report(sup_report{.supervisor = name_,
                            .kind = kind,
                            .context = context.empty() ? kind : context,
                            .reason = std::move(reason),
                            .offender_pid = std::move(offender_pid),
                            .nb_children = nb_children,
                            .id = spec_.id,
                            .restart = spec_.restart,
                            .significant = spec_.significant,
                            .shutdown = shutdown_policy_of(),
                            .type = spec_.type});
}

task<result<pid>> start_dynamic_supervisor(dynamic_supervisor_flags flags, dyn_template spec,
                                           std::optional<server_name> name) {
  BOOST_OUTCOME_CO_TRY(check_flags(supervisor_flags{.intensity = flags.intensity, .period = flags.period}));
  if (spec.id.empty())
    co_return error{errc::invalid_child_spec, "dynamic supervisor: the child template has an empty id"};
  if (!spec.start)
    co_return error{errc::invalid_child_spec, "child '" + spec.id + "': no start function"};
  if (spec.shutdown && !spec.shutdown->is_brutal_kill() && !spec.shutdown->is_infinity()
      && spec.shutdown->timeout().count() < 0)
    co_return error{errc::invalid_child_spec, "child '" + spec.id + "': negative shutdown timeout"};
  BOOST_OUTCOME_CO_TRY(check_significant(spec.id, spec.significant, spec.restart, flags.auto_shutdown));
  std::string label = name ? name->to_string() : std::string();
  gen_server::start_options o{.name = std::move(name), .link = true};
  auto starting = gen_server::start_opt<dyn_sup_module>(o, flags, std::move(spec), std::move(label));
  auto r = co_await starting;
  if (!r)
    co_return std::move(r).error();
  co_return r.value().pid();
}

task<result<pid>> dyn_start_child(pid sup, dyn_args args) {
  auto calling = gen_server::call<dyn_sup_module>(destination(sup), dyn_sup_module::start_req{std::move(args)},
                                                  otp::infinity);
  co_return co_await calling;
}

task<result<void>> dyn_terminate_child(pid sup, pid child) {
  auto calling = gen_server::call<dyn_sup_module>(destination(sup), dyn_sup_module::terminate_req{child}, otp::infinity);
  co_return co_await calling;
}

task<result<std::vector<child_info>>> dyn_which_children(pid sup) {
  auto calling = gen_server::call<dyn_sup_module>(destination(sup), dyn_sup_module::which_req{}, otp::infinity);
  co_return co_await calling;
}

task<result<child_counts>> dyn_count_children(pid sup) {
  auto calling = gen_server::call<dyn_sup_module>(destination(sup), dyn_sup_module::count_req{}, otp::infinity);
  co_return co_await calling;
}

} // namespace otp::detail
