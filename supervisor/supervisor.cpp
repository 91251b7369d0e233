// SPDX-License-Identifier: Apache-2.0
#include "supervisor/supervisor.hpp"

#include "otp/logger.hpp"
#include "otp/receive.hpp"
#include "supervisor/restart_window.hpp"

#include <boost/outcome/try.hpp>

#include <algorithm>
#include <chrono>
#include <exception>
#include <unordered_map>
#include <unordered_set>
#include <variant>

namespace otp {

// ------------------------------------------------------------- child specs

std::string shutdown_policy::to_string() const {
  switch (kind_) {
    case kind::brutal: return "brutal_kill";
    case kind::unlimited: return "infinity";
    case kind::limited: return std::to_string(ms_);
  }
  return "?";
}

const char* to_string(restart_type r) noexcept {
  switch (r) {
    case restart_type::permanent: return "permanent";
    case restart_type::transient: return "transient";
    case restart_type::temporary: return "temporary";
  }
  return "?";
}

const char* to_string(strategy s) noexcept {
  switch (s) {
    case strategy::one_for_one: return "one_for_one";
    case strategy::one_for_all: return "one_for_all";
    case strategy::rest_for_one: return "rest_for_one";
  }
  return "?";
}

result<void> check_significant(const std::string& id, bool significant, restart_type r, otp::auto_shutdown as) {
  if (!significant)
    return outcome::success();
  // OTP's validSignificant: {bad_combination, [{auto_shutdown, never}, {significant, true}]}.
  if (as == auto_shutdown::never)
    return error{errc::invalid_child_spec, "child '" + id
                                             + "': significant, but the supervisor's auto_shutdown is never "
                                               "(significant children need any_significant or all_significant)"};
  if (r == restart_type::permanent)
    return error{errc::invalid_child_spec, "child '" + id + "': a significant child cannot be permanent"};
  return outcome::success();
}

result<void> check_child_spec(const child_spec& spec, otp::auto_shutdown as) {
  if (spec.id.empty())
    return error{errc::invalid_child_spec, "a child has an empty id"};
  const std::string who = "child '" + spec.id + "': ";
  if (!spec.start)
    return error{errc::invalid_child_spec, who + "no start function"};
  if (spec.shutdown && !spec.shutdown->is_brutal_kill() && !spec.shutdown->is_infinity()
      && spec.shutdown->timeout().count() < 0)
    return error{errc::invalid_child_spec, who + "negative shutdown timeout " + spec.shutdown->to_string()};
  return check_significant(spec.id, spec.significant, spec.restart, as);
}

result<void> check_flags(const supervisor_flags& flags) {
  if (flags.intensity < 0)
    return error{errc::invalid_child_spec, "supervisor flags: negative intensity " + std::to_string(flags.intensity)};
  if (flags.period.count() <= 0)
    return error{errc::invalid_child_spec,
                 "supervisor flags: period must be at least 1 s, not " + std::to_string(flags.period.count())};
  return outcome::success();
}

result<void> check_child_specs(const std::vector<child_spec>& specs, otp::auto_shutdown as) {
  std::unordered_set<std::string> ids;
  for (const auto& s : specs) {
    BOOST_OUTCOME_TRY(check_child_spec(s, as));
    if (!ids.insert(s.id).second)
      return error{errc::invalid_child_spec, "child '" + s.id + "': duplicate id"};
  }
  return outcome::success();
}

namespace {

class sup_category_impl final : public std::error_category {
public:
  [[nodiscard]] const char* name() const noexcept override { return "otp.supervisor"; }
  [[nodiscard]] std::string message(int c) const override {
    switch (static_cast<sup_errc>(c)) {
      case sup_errc::restarting: return "the child waits for a restart retry";
      case sup_errc::simple_one_for_one: return "not for a dynamic (simple_one_for_one) supervisor";
    }
    return "unknown supervisor error";
  }
};

} // namespace

const std::error_category& sup_category() noexcept {
  static const sup_category_impl category;
  return category;
}

namespace detail {

std::string start_reason(const error& e) {
  if (e == errc::exited)
    return e.reason.to_string();
  return e.message();
}

std::string pid_term(const std::optional<pid>& p, bool restarting) {
  std::string s = p ? p->to_string() : std::string("undefined");
  return restarting ? "{restarting," + s + "}" : s;
}

void report(const sup_report& r) {
  if (!log_enabled(log_level::error))
    return;
  std::vector<log_field> f;
  f.push_back({"supervisor", std::string(r.supervisor)});
  f.push_back({"errorContext", std::string(r.context)});
  f.push_back({"reason", r.reason});
  if (r.nb_children)
    f.push_back({"offender.nb_children", std::to_string(*r.nb_children)});
  else
    f.push_back({"offender.pid", r.offender_pid});
  f.push_back({"offender.id", std::string(r.id)});
  f.push_back({"offender.restart_type", to_string(r.restart)});
  f.push_back({"offender.significant", r.significant ? "true" : "false"});
  f.push_back({"offender.shutdown", r.shutdown.to_string()});
  f.push_back({"offender.child_type", r.type == child_type::supervisor ? "supervisor" : "worker"});
  // As OTP's format_log_multi: four lines, the offender as a proplist.
  std::string text = "SUPERVISOR REPORT\n    supervisor: " + f[0].value + "\n    errorContext: " + f[1].value
                     + "\n    reason: " + f[2].value + "\n    offender: [";
  for (std::size_t i = 3; i < f.size(); ++i) {
    if (i > 3)
      text += ",\n               ";
    text += "{" + f[i].key.substr(f[i].key.find('.') + 1) + "," + f[i].value + "}";
  }
  text += "]";
  log(log_level::error, "supervisor", r.kind, std::move(text), std::move(f));
}

namespace {

// Sent to itself when a restart failed (OTP's try_again_restart).
struct try_again_restart {
  std::string id;
};

} // namespace

// The supervisor's state and callbacks, run as a gen_server.
class sup_module {
public:
  sup_module(supervisor_flags flags, std::vector<child_spec> specs, std::string name)
    : flags_(flags), window_(flags.intensity, flags.period), name_(std::move(name)) {
    for (auto& s : specs)
      children_.push_back(child{std::move(s)});
  }

  task<init_result> init(context& ctx) {
    otp::trap_exit(true);
    self_ = ctx.self();
    if (name_.empty())
      name_ = self_.to_string();
    // Start in order; the first failure stops the ones already started.
    for (std::size_t i = 0; i < children_.size();) {
      auto r = co_await start(children_[i]);
      const bool ignored = !r && r.error() == errc::ignored;
      if (!r && !ignored) {
        const std::string why = start_reason(r.error());
        report("start_error", children_[i], why, pid_term(std::nullopt));
        const std::string id = children_[i].spec.id;
        children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(i));
        co_await terminate_all();
        // OTP: {shutdown, {failed_to_start_child, Id, Reason}}.
        co_return init_result::stop(exit_reason::shutdown("{failed_to_start_child," + id + "," + why + "}"));
      }
      if (ignored && children_[i].spec.restart == restart_type::temporary)
        children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(i)); // ignored temporary: dropped
      else
        ++i;
    }
    co_return init_result::ok();
  }

  using request = std::variant<exit_msg, try_again_restart, sup_start_req, sup_terminate_req, sup_restart_req,
                               sup_delete_req, sup_which_req, sup_count_req>;

  task<void> handle_info(context& ctx, request m) {
    if (auto* e = std::get_if<exit_msg>(&m)) {
      child* c = find_pid(e->from);
      if (c == nullptr)
        co_return; // an 'EXIT' from a process we do not know: ignored, as OTP does
      c->pid.reset();
      co_await child_exited(ctx, *c, e->reason, e->from);
    } else if (auto* t = std::get_if<try_again_restart>(&m)) {
      child* c = find_id(t->id);
      if (c != nullptr && c->restarting) // else terminate_child or delete cancelled it
        co_await restart(ctx, *c, c->restarting_from, true);
    } else if (auto* start_q = std::get_if<sup_start_req>(&m)) {
      auto r = co_await start_child(std::move(start_q->spec));
      otp::reply(start_q->to, std::move(r));
    } else if (auto* terminate_q = std::get_if<sup_terminate_req>(&m)) {
      auto r = co_await terminate_child(terminate_q->id);
      otp::reply(terminate_q->to, std::move(r));
    } else if (auto* restart_q = std::get_if<sup_restart_req>(&m)) {
      auto r = co_await restart_child(restart_q->id);
      otp::reply(restart_q->to, std::move(r));
    } else if (auto* delete_q = std::get_if<sup_delete_req>(&m)) {
      otp::reply(delete_q->to, delete_child(delete_q->id));
    } else if (auto* which_q = std::get_if<sup_which_req>(&m)) {
      otp::reply(which_q->to, which_children());
    } else if (auto* count_q = std::get_if<sup_count_req>(&m)) {
      otp::reply(count_q->to, count_children());
    }
  }

  task<void> terminate(context&, const exit_reason&) { co_await terminate_all(); }

private:
  struct child {
    child_spec spec;
    std::optional<otp::pid> pid{}; // empty: not running
    // Waiting for a restart retry (OTP's {restarting, Pid}), and the pid it
    // had when its failed restart began (empty in a group restart's later children).
    bool restarting = false;
    std::optional<otp::pid> restarting_from{};
  };

  task<result<pid>> start_child(child_spec spec) {
    BOOST_OUTCOME_CO_TRY(check_child_spec(spec, flags_.auto_shutdown));
    if (child* c = find_id(spec.id)) {
      if (c->pid)
        co_return error{errc::already_started, "child '" + spec.id + "' is running as " + c->pid->to_string()};
      co_return error{errc::already_started, "child '" + spec.id + "' is already present (not running)"};
    }
    children_.push_back(child{std::move(spec)});
    auto r = co_await start(children_.back());
    if (!r) {
      // OTP: an ignored child is kept with pid undefined, unless temporary.
      if (!(r.error() == errc::ignored) || children_.back().spec.restart == restart_type::temporary)
        children_.pop_back();
      co_return std::move(r).error();
    }
    co_return *children_.back().pid;
  }

  task<result<void>> terminate_child(const std::string& id) {
    child* c = find_id(id);
    if (c == nullptr)
      co_return error{errc::not_found, "no child '" + id + "'"};
    if (c->pid)
      co_await shut_down(*c);
    c->restarting = false; // a pending retry finds it stopped and does nothing
    c->restarting_from.reset();
    if (c->spec.restart == restart_type::temporary)
      erase(*c);
    co_return outcome::success();
  }

  task<result<pid>> restart_child(const std::string& id) {
    child* c = find_id(id);
    if (c == nullptr)
      co_return error{errc::not_found, "no child '" + id + "'"};
    if (c->restarting)
      co_return error{sup_errc::restarting, "child '" + id + "' waits for a restart retry"};
    if (c->pid)
      co_return error{errc::running, "child '" + id + "' is running as " + c->pid->to_string()};
    BOOST_OUTCOME_CO_TRY(co_await start(*c)); // `ignored`: kept, not running
    co_return *c->pid;
  }

  result<void> delete_child(const std::string& id) {
    child* c = find_id(id);
    if (c == nullptr)
      return error{errc::not_found, "no child '" + id + "'"};
    if (c->restarting)
      return error{sup_errc::restarting, "child '" + id + "' waits for a restart retry"};
    if (c->pid)
      return error{errc::running, "child '" + id + "' is running as " + c->pid->to_string()};
    erase(*c);
    return outcome::success();
  }

  std::vector<child_info> which_children() const {
    std::vector<child_info> out;
    for (const auto& c : children_)
      out.push_back(child_info{c.spec.id, c.pid, c.spec.type, c.restarting});
    return out;
  }

  child_counts count_children() const {
    child_counts n;
    for (const auto& c : children_) {
      ++n.specs;
      n.active += c.pid ? 1 : 0;
      (c.spec.type == child_type::supervisor ? n.supervisors : n.workers) += 1;
    }
    return n;
  }

  child* find_id(const std::string& id) {
    auto it = std::find_if(children_.begin(), children_.end(), [&](const child& c) { return c.spec.id == id; });
    return it == children_.end() ? nullptr : &*it;
  }
  child* find_pid(const pid& p) {
    auto it = std::find_if(children_.begin(), children_.end(), [&](const child& c) { return c.pid == p; });
    return it == children_.end() ? nullptr : &*it;
  }
  std::size_t index_of(const child& c) const { return static_cast<std::size_t>(&c - children_.data()); }
  void erase(const child& c) { children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(index_of(c))); }

  // Runs the child's start function and records its pid. Fails with the
  // start's error, `ignored` included (the child is then not running).
  task<result<void>> start(child& c) {
    result<pid> r = error{errc::invalid_argument};
    std::exception_ptr crash;
    try {
      auto starting = c.spec.start();
      r = co_await starting;
    } catch (...) {
      crash = std::current_exception();
    }
    if (crash)
      co_return error{errc::exited, "the start function of child '" + c.spec.id + "' threw",
                      exit_reason::from_exception(crash)};
    if (!r)
      co_return std::move(r).error();
    c.pid = r.value();
    co_return outcome::success();
  }

  // Stops a running child (docs/otp_semantics.md 5); an unexpected reason is reported.
  task<void> shut_down(child& c) {
    const pid p = *c.pid;
    const shutdown_policy sp = c.spec.shutdown_or_default();
    auto stopping = detail::shut_down({p}, sp);
    const auto ended = co_await stopping;
    c.pid.reset();
    if (!clean_shutdown(sp, c.spec.restart, ended.front().second))
      report("shutdown_error", c, ended.front().second.to_string(), p.to_string());
  }

  // Stops every running child, in reverse start order.
  task<void> terminate_all() {
    for (std::size_t i = children_.size(); i-- > 0;) {
      if (children_[i].pid)
        co_await shut_down(children_[i]);
      children_[i].restarting = false;
      children_[i].restarting_from.reset();
    }
  }

  // A child exited on its own (OTP's restart_child/do_restart).
  task<void> child_exited(context& ctx, child& c, const exit_reason& why, const pid& was) {
    const bool restart_it = must_restart(c.spec.restart, why);
    if (restart_it || !why.is_normal_or_shutdown())
      report("child_terminated", c, why.to_string(), was.to_string());
    if (restart_it) {
      co_await restart(ctx, c, was, false);
      co_return;
    }
    const bool significant = c.spec.significant;
    if (c.spec.restart == restart_type::temporary)
      erase(c);
    if (significant)
      check_auto_shutdown(ctx);
  }

  void check_auto_shutdown(context& ctx) {
    switch (flags_.auto_shutdown) {
      case auto_shutdown::never: return;
      case auto_shutdown::any_significant: ctx.stop(exit_reason::shutdown()); return;
      case auto_shutdown::all_significant:
        if (std::none_of(children_.begin(), children_.end(),
                         [](const child& k) { return k.spec.significant && k.pid.has_value(); }))
          ctx.stop(exit_reason::shutdown());
        return;
    }
  }

  // Counts the restart, then restarts by strategy (OTP's restart/2). `old`
  // is the child's pid as OTP's reports name it: the pid that exited, or on
  // a retry (`retry`) the one its failed restart began from.
  task<void> restart(context& ctx, child& c, std::optional<pid> old, bool retry) {
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(this_scheduler().now().time_since_epoch());
    if (!window_.add(now.count())) {
      report("reached_max_restart_intensity", c, "reached_max_restart_intensity", pid_term(old, retry), "shutdown");
      erase(c);
      ctx.stop(exit_reason::shutdown()); // terminate() stops the rest, then the supervisor exits
      co_return;
    }
    if (flags_.strategy == strategy::one_for_one) {
      auto r = co_await start(c);
      if (r || r.error() == errc::ignored) {
        c.restarting = false;
        c.restarting_from.reset();
        co_return;
      }
      report("start_error", c, start_reason(r.error()), pid_term(old, retry));
      mark_restarting(c, old);
      co_return;
    }
    const std::string exited = c.spec.id;
    const std::size_t at = index_of(c);
    std::size_t first = at;
    std::size_t last = children_.size(); // the range to restart, in start order
    if (flags_.strategy == strategy::one_for_all)
      first = 0;
    // Siblings in the range are stopped in reverse order; temporary ones go.
    for (std::size_t i = last; i-- > first;) {
      if (i != at && children_[i].pid)
        co_await shut_down(children_[i]);
    }
    for (std::size_t i = last; i-- > first;) {
      if (i != at && children_[i].spec.restart == restart_type::temporary) {
        children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(i));
        --last;
      }
    }
    for (std::size_t i = first; i < last; ++i) {
      children_[i].restarting = false;
      children_[i].restarting_from.reset();
    }
    // Then they start again in start order. A failure marks only that child
    // restarting; the ones after it are left not running until the retry
    // (OTP's restart_multiple_children).
    for (std::size_t i = first; i < last; ++i) {
      child& k = children_[i];
      auto r = co_await start(k);
      if (!r && !(r.error() == errc::ignored)) {
        report("start_error", k, start_reason(r.error()), pid_term(std::nullopt));
        mark_restarting(k, k.spec.id == exited ? old : std::nullopt);
        co_return;
      }
    }
  }

  // A failed restart: the child waits for a retry (counted again when it comes).
  void mark_restarting(child& c, std::optional<pid> from) {
    c.restarting = true;
    c.restarting_from = from;
    otp::send(self_, try_again_restart{c.spec.id});
  }

  void report(std::string_view kind, const child& c, std::string reason, std::string offender_pid,
              std::string_view context = {}) const {
    detail::report(sup_report{.supervisor = name_,
                              .kind = kind,
                              .context = context.empty() ? kind : context,
                              .reason = std::move(reason),
                              .offender_pid = std::move(offender_pid),
                              .id = c.spec.id,
                              .restart = c.spec.restart,
                              .significant = c.spec.significant,
                              .shutdown = c.spec.shutdown_or_default(),
                              .type = c.spec.type});
  }

  supervisor_flags flags_;
  restart_window window_;
  std::string name_;
  pid self_;
  std::vector<child> children_;
};

namespace {
struct down_in {
  const std::unordered_map<monitor_ref, pid>* refs;
  bool operator()(const down_msg& d) const { return refs->contains(d.ref); }
};
} // namespace

task<std::vector<std::pair<pid, exit_reason>>> shut_down(std::vector<pid> children, shutdown_policy how) {
  std::unordered_map<monitor_ref, pid> pending;
  for (const pid& p : children) {
    pending.emplace(otp::monitor(p), p);
    otp::exit(p, how.is_brutal_kill() ? exit_reason::kill() : exit_reason::shutdown());
  }
  std::vector<std::pair<pid, exit_reason>> ended;
  // A timeout too long for the clock (milliseconds::max()) waits as infinity does.
  constexpr auto clock_limit = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::duration::max());
  bool limited = !how.is_brutal_kill() && !how.is_infinity() && how.timeout() < clock_limit;
  const auto deadline = limited ? this_scheduler().deadline_after(how.timeout()) : std::chrono::steady_clock::time_point{};
  while (!pending.empty()) {
    std::optional<down_msg> d;
    if (limited) {
      const auto left = std::max(deadline - this_scheduler().now(), std::chrono::steady_clock::duration::zero());
      auto waiting = otp::receive_for<down_msg>(left, down_in{&pending});
      d = co_await waiting;
      if (!d) {
        for (const auto& [ref, p] : pending)
          otp::exit(p, exit_reason::kill()); // one timer for all of them
        limited = false;
        continue;
      }
    } else {
      auto waiting = otp::receive<down_msg>(down_in{&pending});
      d = co_await waiting;
    }
    ended.emplace_back(pending.at(d->ref), d->reason);
    pending.erase(d->ref);
  }
  for (auto& [p, why] : ended) {
    otp::unlink(p);
    auto flush = otp::receive_for<exit_msg>(std::chrono::steady_clock::duration::zero(), exit_of{p});
    if (auto e = co_await flush; e && why.which() == exit_reason::kind::noproc)
      why = e->reason; // the 'EXIT' has the true reason
  }
  co_return ended;
}

} // namespace detail

namespace supervisor {

namespace {

// Sends a run-time request to any supervisor and awaits its answer.
template <class R, class Req>
task<typename detail::call_value<R>::type> ask(destination sup, const char* what, Req req) {
  auto target = sup.resolve(detail::calling_node(what));
  if (!target)
    co_return std::move(target).error();
  auto make = [&req](const from<R>& f) {
    req.to = f;
    return detail::make_message<Req>(std::move(req));
  };
  auto wait = detail::call_process<R>(target.value(), otp::infinity, make);
  co_return co_await wait;
}

} // namespace

task<result<pid>> start_link(supervisor_flags flags, std::vector<child_spec> children, std::optional<server_name> name) {
  BOOST_OUTCOME_CO_TRY(check_flags(flags));
  BOOST_OUTCOME_CO_TRY(check_child_specs(children, flags.auto_shutdown));
  std::string label = name ? name->to_string() : std::string();
  gen_server::start_options o{.name = std::move(name), .link = true};
  auto starting = gen_server::start_opt<detail::sup_module>(o, flags, std::move(children), std::move(label));
  auto r = co_await starting;
  if (!r)
    co_return std::move(r).error();
  co_return r.value().pid();
}

start_fn starter(supervisor_flags flags, std::vector<child_spec> children, std::optional<server_name> name) {
  return [flags, children = std::move(children), name = std::move(name)]() {
    return start_link(flags, children, name);
  };
}

task<result<pid>> start_child(destination sup, child_spec spec) {
  return ask<result<pid>>(std::move(sup), "supervisor::start_child", detail::sup_start_req{{}, std::move(spec)});
}

task<result<void>> terminate_child(destination sup, std::string id) {
  return ask<result<void>>(std::move(sup), "supervisor::terminate_child", detail::sup_terminate_req{{}, std::move(id)});
}

task<result<pid>> restart_child(destination sup, std::string id) {
  return ask<result<pid>>(std::move(sup), "supervisor::restart_child", detail::sup_restart_req{{}, std::move(id)});
}

task<result<void>> delete_child(destination sup, std::string id) {
  return ask<result<void>>(std::move(sup), "supervisor::delete_child", detail::sup_delete_req{{}, std::move(id)});
}

task<result<std::vector<child_info>>> which_children(destination sup) {
  return ask<std::vector<child_info>>(std::move(sup), "supervisor::which_children", detail::sup_which_req{});
}

task<result<child_counts>> count_children(destination sup) {
  return ask<child_counts>(std::move(sup), "supervisor::count_children", detail::sup_count_req{});
}

} // namespace supervisor

} // namespace otp
