// SPDX-License-Identifier: Apache-2.0
// supervisor/dynamic_supervisor.hpp - children started at run time from one
// template (OTP's simple_one_for_one, Elixir's DynamicSupervisor).
#pragma once

#include "otp/logger.hpp"
#include "otp/receive.hpp"
#include "supervisor/restart_window.hpp"
#include "supervisor/supervisor.hpp"

#include <boost/outcome/try.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace otp {

/// The template every child of a dynamic supervisor is started from. The
/// start function receives the extra arguments given to start_child.
template <class... Extra>
struct dynamic_child_spec {
  std::string id; ///< names the children in reports; mandatory
  std::function<task<result<pid>>(Extra...)> start;
  restart_type restart = restart_type::permanent;
  std::optional<shutdown_policy> shutdown{};
  child_type type = child_type::worker;
  /// Its own exit may stop the supervisor (see the flags' auto_shutdown);
  /// not for permanent children, and not under auto_shutdown `never`.
  bool significant = false;
};

/// Returns a template start function for gen_server children of module M,
/// constructed from `fixed...` followed by start_child's extra arguments.
template <class M, class... Extra, class... A>
[[nodiscard]] std::function<task<result<pid>>(Extra...)> dynamic_worker(A... fixed) {
  return [fixed = std::make_tuple(std::move(fixed)...)](Extra... extra) {
    return detail::start_gen_server_child<M>(gen_server::start_options{.link = true},
                                             std::tuple_cat(fixed, std::make_tuple(std::move(extra)...)));
  };
}

/// A dynamic supervisor's flags.
struct dynamic_supervisor_flags {
  int intensity = 1;
  std::chrono::seconds period{5};
  /// start_child fails with `invalid_argument` once this many children run.
  std::optional<std::size_t> max_children{};
  /// When significant children ending on their own stop the supervisor:
  /// `any_significant` at the first, `all_significant` when none is left.
  otp::auto_shutdown auto_shutdown = auto_shutdown::never;
};

/// A started dynamic supervisor whose children take `Extra...`.
template <class... Extra>
class dynamic_supervisor_ref {
public:
  dynamic_supervisor_ref() = default;
  explicit dynamic_supervisor_ref(const otp::pid& p) noexcept : pid_(p) {}
  [[nodiscard]] const otp::pid& pid() const noexcept { return pid_; }

private:
  otp::pid pid_;
};

namespace detail {

template <class... Extra>
class dyn_sup_module {
public:
  struct start_req {
    std::tuple<Extra...> args;
  };
  struct terminate_req {
    pid child;
  };
  struct which_req {};
  struct count_req {};

  dyn_sup_module(dynamic_supervisor_flags flags, dynamic_child_spec<Extra...> spec, std::string name)
    : flags_(flags), spec_(std::move(spec)), window_(flags.intensity, flags.period), name_(std::move(name)) {}

  void init(context& ctx) {
    otp::trap_exit(true);
    if (name_.empty())
      name_ = ctx.self().to_string();
  }

  task<result<pid>> handle_call(context&, start_req req) {
    if (flags_.max_children && children_.size() + retrying_.size() >= *flags_.max_children)
      co_return error{errc::invalid_argument,
                      "dynamic supervisor " + name_ + " has max_children (" + std::to_string(*flags_.max_children)
                        + ") children"};
    auto r = co_await start(req.args);
    if (!r)
      co_return std::move(r).error();
    children_.emplace(r.value(), std::move(req.args));
    co_return r.value();
  }

  // OTP: ok for a child, for a child waiting for a restart retry (the retry
  // is dropped) and for any pid no longer alive; not_found for a live stranger.
  task<result<void>> handle_call(context&, terminate_req req) {
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

  std::vector<child_info> handle_call(context&, which_req) { return which(); }

  child_counts handle_call(context&, count_req) { return counts(); }

  struct retry {
    std::uint64_t key;
  };

  using info = std::variant<exit_msg, retry, sup_start_req, sup_terminate_req, sup_restart_req, sup_delete_req,
                            sup_which_req, sup_count_req>;

  task<void> handle_info(context& ctx, info m) {
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
  task<void> terminate(context&, const exit_reason&) {
    std::vector<pid> all;
    for (const auto& [p, args] : children_)
      all.push_back(p);
    co_await shut_down(all);
    children_.clear();
    retrying_.clear();
  }

private:
  // A child whose restart failed, until its retry (OTP's {restarting, OldPid}).
  struct waiting {
    pid old;
    std::tuple<Extra...> args;
  };

  // supervisor::* on a dynamic supervisor: OTP's answers for simple_one_for_one.
  void answer_generic(info& m) {
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

  [[nodiscard]] std::vector<child_info> which() const {
    std::vector<child_info> out;
    for (const auto& [p, args] : children_)
      out.push_back(child_info{spec_.id, p, spec_.type, false});
    for (std::size_t i = 0; i < retrying_.size(); ++i)
      out.push_back(child_info{spec_.id, std::nullopt, spec_.type, true});
    return out;
  }

  [[nodiscard]] child_counts counts() const {
    const std::size_t n = children_.size() + retrying_.size();
    child_counts c{.specs = 1, .active = children_.size()};
    (spec_.type == child_type::supervisor ? c.supervisors : c.workers) = n;
    return c;
  }

  task<void> child_exited(context& ctx, const exit_msg& e) {
    auto found = children_.find(e.from);
    if (found == children_.end())
      co_return; // not ours: ignored, as OTP does
    std::tuple<Extra...> args = std::move(found->second);
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
  task<void> restart(context& ctx, std::tuple<Extra...> args, pid old, bool is_retry) {
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

  task<result<pid>> start(std::tuple<Extra...> args) {
    std::exception_ptr crash;
    result<pid> r = error{errc::invalid_argument};
    try {
      auto starting = std::apply(spec_.start, std::move(args));
      r = co_await starting;
    } catch (...) {
      crash = std::current_exception();
    }
    if (crash)
      co_return error{errc::exited, "the start function of '" + spec_.id + "' threw", exit_reason::from_exception(crash)};
    co_return r;
  }

  [[nodiscard]] shutdown_policy shutdown_policy_of() const {
    return spec_.shutdown ? *spec_.shutdown : child_spec::default_shutdown(spec_.type);
  }

  // Stops `targets` together. As OTP, an unexpected exit is reported per
  // child when one is stopped, and per reason with the count when many are.
  task<void> shut_down(std::vector<pid> targets) {
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

  void report(std::string_view kind, std::string reason, std::string offender_pid, std::string_view context = {},
              std::optional<std::size_t> nb_children = std::nullopt) const {
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

  dynamic_supervisor_flags flags_;
  dynamic_child_spec<Extra...> spec_;
  restart_window window_;
  std::string name_;
  std::unordered_map<pid, std::tuple<Extra...>> children_;
  std::unordered_map<std::uint64_t, waiting> retrying_; // failed restarts, retried by message
  std::uint64_t next_key_ = 0;
};

} // namespace detail

/// Dynamic supervisors: start, and add children at run time.
namespace dynamic_supervisor {

/// Starts a dynamic supervisor linked to the caller (no children yet).
/// Fails with `invalid_child_spec` for a bad template or flags.
template <class... Extra>
task<result<dynamic_supervisor_ref<Extra...>>> start_link(dynamic_supervisor_flags flags,
                                                          dynamic_child_spec<Extra...> spec,
                                                          std::optional<server_name> name = std::nullopt) {
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
  auto starting = gen_server::start_opt<detail::dyn_sup_module<Extra...>>(o, flags, std::move(spec), std::move(label));
  auto r = co_await starting;
  if (!r)
    co_return std::move(r).error();
  co_return dynamic_supervisor_ref<Extra...>(r.value().pid());
}

/// @private
template <class... Extra>
task<result<pid>> start_and_unwrap(dynamic_supervisor_flags flags, dynamic_child_spec<Extra...> spec,
                                   std::optional<server_name> name) {
  auto starting = start_link(flags, std::move(spec), std::move(name));
  auto r = co_await starting;
  if (!r)
    co_return std::move(r).error();
  co_return r.value().pid();
}

/// Returns a start function for a dynamic supervisor as a child of another
/// supervisor (give the spec `type = child_type::supervisor`).
template <class... Extra>
[[nodiscard]] start_fn starter(dynamic_supervisor_flags flags, dynamic_child_spec<Extra...> spec,
                               std::optional<server_name> name = std::nullopt) {
  return [flags, spec = std::move(spec), name = std::move(name)]() { return start_and_unwrap(flags, spec, name); };
}

/// Starts a child of `sup` from its template with `extra` (start_child of a
/// simple_one_for_one supervisor). Fails with `invalid_argument` at
/// max_children, `ignored` if the start ignored, or the start's error.
/// For a supervisor known by name, build the ref from `whereis`.
template <class... Extra>
task<result<pid>> start_child(dynamic_supervisor_ref<Extra...> sup, std::type_identity_t<Extra>... extra) {
  using module = detail::dyn_sup_module<Extra...>;
  auto calling = gen_server::call<module>(destination(sup.pid()),
                                          typename module::start_req{std::tuple<Extra...>(std::move(extra)...)},
                                          otp::infinity);
  co_return co_await calling;
}

/// Stops the child `child` (its restart does not count).
template <class... Extra>
task<result<void>> terminate_child(dynamic_supervisor_ref<Extra...> sup, pid child) {
  using module = detail::dyn_sup_module<Extra...>;
  auto calling = gen_server::call<module>(destination(sup.pid()), typename module::terminate_req{child}, otp::infinity);
  co_return co_await calling;
}

/// Returns the children (in no particular order).
template <class... Extra>
task<result<std::vector<child_info>>> which_children(dynamic_supervisor_ref<Extra...> sup) {
  using module = detail::dyn_sup_module<Extra...>;
  auto calling = gen_server::call<module>(destination(sup.pid()), typename module::which_req{}, otp::infinity);
  co_return co_await calling;
}

/// Returns the counts of children.
template <class... Extra>
task<result<child_counts>> count_children(dynamic_supervisor_ref<Extra...> sup) {
  using module = detail::dyn_sup_module<Extra...>;
  auto calling = gen_server::call<module>(destination(sup.pid()), typename module::count_req{}, otp::infinity);
  co_return co_await calling;
}

} // namespace dynamic_supervisor

} // namespace otp
