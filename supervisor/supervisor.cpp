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

result<void> check_child_spec(const child_spec& spec) {
  if (spec.id.empty())
    return error{errc::invalid_child_spec, "a child has an empty id"};
  const std::string who = "child '" + spec.id + "': ";
  if (!spec.start)
    return error{errc::invalid_child_spec, who + "no start function"};
  if (spec.shutdown && !spec.shutdown->is_brutal_kill() && !spec.shutdown->is_infinity()
      && spec.shutdown->timeout().count() < 0)
    return error{errc::invalid_child_spec, who + "negative shutdown timeout " + spec.shutdown->to_string()};
  if (spec.significant && spec.restart == restart_type::permanent)
    return error{errc::invalid_child_spec, who + "a significant child cannot be permanent"};
  return outcome::success();
}

result<void> check_flags(const supervisor_flags& flags) {
  if (flags.intensity < 0)
    return error{errc::invalid_child_spec, "supervisor flags: negative intensity " + std::to_string(flags.intensity)};
  if (flags.period.count() <= 0)
    return error{errc::invalid_child_spec,
                 "supervisor flags: period must be at least 1 s, not " + std::to_string(flags.period.count())};
  return outcome::success();
}

result<void> check_child_specs(const std::vector<child_spec>& specs) {
  std::unordered_set<std::string> ids;
  for (const auto& s : specs) {
    BOOST_OUTCOME_TRY(check_child_spec(s));
    if (!ids.insert(s.id).second)
      return error{errc::invalid_child_spec, "child '" + s.id + "': duplicate id"};
  }
  return outcome::success();
}

namespace detail {

namespace {

struct start_child_req {
  child_spec spec;
};
struct terminate_child_req {
  std::string id;
};
struct restart_child_req {
  std::string id;
};
struct delete_child_req {
  std::string id;
};
struct which_children_req {};
struct count_children_req {};
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
      children_.push_back(child{std::move(s), {}, false});
  }

  task<init_result> init(context& ctx) {
    otp::trap_exit(true);
    self_ = ctx.self();
    if (name_.empty())
      name_ = self_.to_string();
    // Start in order; the first failure stops the ones already started.
    for (std::size_t i = 0; i < children_.size();) {
      auto r = co_await start(children_[i]);
      if (!r) {
        const std::string why = "failed_to_start_child " + children_[i].spec.id + ": " + r.error().message();
        report(log_level::error, "start_error", children_[i], exit_reason::error(r.error().message()));
        children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(i));
        co_await terminate_all();
        co_return init_result::stop(exit_reason::shutdown(why));
      }
      if (!children_[i].pid && children_[i].spec.restart == restart_type::temporary)
        children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(i)); // ignored temporary: dropped
      else
        ++i;
    }
    co_return init_result::ok();
  }

  task<result<pid>> handle_call(context&, start_child_req req) {
    BOOST_OUTCOME_CO_TRY(check_child_spec(req.spec));
    if (child* c = find_id(req.spec.id)) {
      if (c->pid)
        co_return error{errc::already_started, "child '" + req.spec.id + "' is running as " + c->pid->to_string()};
      co_return error{errc::already_started, "child '" + req.spec.id + "' is already present (not running)"};
    }
    children_.push_back(child{std::move(req.spec), {}, false});
    auto r = co_await start(children_.back());
    if (!r) {
      const bool ignored = r.error() == errc::ignored;
      if (!ignored || children_.back().spec.restart == restart_type::temporary)
        children_.pop_back();
      co_return std::move(r).error();
    }
    co_return *children_.back().pid;
  }

  task<result<void>> handle_call(context&, terminate_child_req req) {
    child* c = find_id(req.id);
    if (c == nullptr)
      co_return error{errc::not_found, "no child '" + req.id + "'"};
    if (c->pid)
      co_await shut_down(*c);
    c->restarting = false;
    if (c->spec.restart == restart_type::temporary)
      erase(*c);
    co_return outcome::success();
  }

  task<result<pid>> handle_call(context&, restart_child_req req) {
    child* c = find_id(req.id);
    if (c == nullptr)
      co_return error{errc::not_found, "no child '" + req.id + "'"};
    if (c->pid)
      co_return error{errc::running, "child '" + req.id + "' is running as " + c->pid->to_string()};
    auto r = co_await start(*c);
    if (!r)
      co_return std::move(r).error();
    co_return *c->pid;
  }

  result<void> handle_call(context&, delete_child_req req) {
    child* c = find_id(req.id);
    if (c == nullptr)
      return error{errc::not_found, "no child '" + req.id + "'"};
    if (c->pid)
      return error{errc::running, "child '" + req.id + "' is running as " + c->pid->to_string()};
    erase(*c);
    return outcome::success();
  }

  std::vector<child_info> handle_call(context&, which_children_req) {
    std::vector<child_info> out;
    for (const auto& c : children_)
      out.push_back(child_info{c.spec.id, c.pid, c.spec.type, c.restarting});
    return out;
  }

  child_counts handle_call(context&, count_children_req) {
    child_counts n;
    for (const auto& c : children_) {
      ++n.specs;
      n.active += c.pid ? 1 : 0;
      (c.spec.type == child_type::supervisor ? n.supervisors : n.workers) += 1;
    }
    return n;
  }

  task<void> handle_info(context& ctx, std::variant<exit_msg, try_again_restart> m) {
    if (auto* e = std::get_if<exit_msg>(&m)) {
      child* c = find_pid(e->from);
      if (c == nullptr)
        co_return; // an 'EXIT' from a process we do not know: ignored, as OTP does
      c->pid.reset();
      co_await child_exited(ctx, *c, e->reason, e->from);
    } else {
      child* c = find_id(std::get<try_again_restart>(m).id);
      if (c != nullptr && c->restarting)
        co_await restart(ctx, *c);
    }
  }

  task<void> terminate(context&, const exit_reason&) { co_await terminate_all(); }

private:
  struct child {
    child_spec spec;
    std::optional<otp::pid> pid; // empty: not running
    bool restarting = false;
  };

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

  // Runs the child's start function; records its pid. `ignored` leaves it not running.
  task<result<void>> start(child& c) {
    c.restarting = false;
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
    if (!r) {
      if (r.error() == errc::ignored)
        co_return outcome::success();
      co_return std::move(r).error();
    }
    c.pid = r.value();
    co_return outcome::success();
  }

  // Stops a running child (OTP_SEMANTICS.md 5); an unexpected reason is reported.
  task<void> shut_down(child& c) {
    const pid p = *c.pid;
    const shutdown_policy sp = c.spec.shutdown_or_default();
    auto stopping = detail::shut_down({p}, sp);
    const auto ended = co_await stopping;
    c.pid.reset();
    if (!clean_shutdown(sp, c.spec.restart, ended.front().second))
      report(log_level::error, "shutdown_error", c, ended.front().second, p);
  }

  // Stops every running child, in reverse start order.
  task<void> terminate_all() {
    for (std::size_t i = children_.size(); i-- > 0;) {
      if (children_[i].pid)
        co_await shut_down(children_[i]);
      children_[i].restarting = false;
    }
  }

  // A child exited on its own (OTP's restart_child/do_restart).
  task<void> child_exited(context& ctx, child& c, const exit_reason& why, const pid& was) {
    const bool restart_it = must_restart(c.spec.restart, why);
    if (restart_it || !why.is_normal_or_shutdown())
      report(log_level::error, "child_terminated", c, why, was);
    if (restart_it) {
      co_await restart(ctx, c);
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

  // Counts the restart, then restarts by strategy (OTP's restart/2).
  task<void> restart(context& ctx, child& c) {
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(this_scheduler().now().time_since_epoch());
    if (!window_.add(now.count())) {
      report(log_level::error, "reached_max_restart_intensity", c, exit_reason::shutdown());
      erase(c);
      ctx.stop(exit_reason::shutdown()); // terminate() stops the rest, then the supervisor exits
      co_return;
    }
    const std::size_t at = index_of(c);
    std::size_t first = at, last = at + 1; // the range to restart, in start order
    switch (flags_.strategy) {
      case strategy::one_for_one: break;
      case strategy::rest_for_one: last = children_.size(); break;
      case strategy::one_for_all:
        first = 0;
        last = children_.size();
        break;
    }
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
    // Then they start again in start order; a failure leaves that child and
    // the ones after it `restarting`, and a retry message (OTP's try_again).
    for (std::size_t i = first; i < last; ++i)
      children_[i].restarting = true;
    for (std::size_t i = first; i < last; ++i) {
      child& k = children_[i];
      auto r = co_await start(k);
      if (!r) {
        report(log_level::error, "start_error", k, r.error().reason.is_normal() ? exit_reason::error(r.error().message())
                                                                                : r.error().reason);
        k.restarting = true;
        otp::send(self_, try_again_restart{k.spec.id}); // counted again when retried
        co_return;
      }
    }
  }

  void report(log_level level, std::string_view kind, const child& c, const exit_reason& why,
              std::optional<pid> p = std::nullopt) const {
    if (!log_enabled(level))
      return;
    const std::optional<pid> who = p ? p : c.pid;
    log(level, "supervisor", kind,
        "supervisor " + name_ + ": child '" + c.spec.id + "'"
          + (who ? " " + who->to_string() : std::string()) + " (" + to_string(c.spec.restart) + "): "
          + why.to_string());
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
  bool limited = !how.is_brutal_kill() && !how.is_infinity();
  const auto deadline = this_scheduler().now() + how.timeout();
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

constexpr auto no_limit = otp::infinity;

} // namespace

task<result<pid>> start_link(supervisor_flags flags, std::vector<child_spec> children, std::optional<server_name> name) {
  BOOST_OUTCOME_CO_TRY(check_flags(flags));
  BOOST_OUTCOME_CO_TRY(check_child_specs(children));
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
  auto calling = gen_server::call<detail::sup_module>(sup, detail::start_child_req{std::move(spec)}, no_limit);
  co_return co_await calling;
}

task<result<void>> terminate_child(destination sup, std::string id) {
  auto calling = gen_server::call<detail::sup_module>(sup, detail::terminate_child_req{std::move(id)}, no_limit);
  co_return co_await calling;
}

task<result<pid>> restart_child(destination sup, std::string id) {
  auto calling = gen_server::call<detail::sup_module>(sup, detail::restart_child_req{std::move(id)}, no_limit);
  co_return co_await calling;
}

task<result<void>> delete_child(destination sup, std::string id) {
  auto calling = gen_server::call<detail::sup_module>(sup, detail::delete_child_req{std::move(id)}, no_limit);
  co_return co_await calling;
}

task<result<std::vector<child_info>>> which_children(destination sup) {
  auto calling = gen_server::call<detail::sup_module>(sup, detail::which_children_req{}, no_limit);
  co_return co_await calling;
}

task<result<child_counts>> count_children(destination sup) {
  auto calling = gen_server::call<detail::sup_module>(sup, detail::count_children_req{}, no_limit);
  co_return co_await calling;
}

} // namespace supervisor

} // namespace otp
