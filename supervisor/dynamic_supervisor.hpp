// SPDX-License-Identifier: Apache-2.0
// supervisor/dynamic_supervisor.hpp - children started at run time from one
// template (OTP's simple_one_for_one, Elixir's DynamicSupervisor).
#pragma once

#include "otp/logger.hpp"
#include "otp/receive.hpp"
#include "supervisor/restart_window.hpp"
#include "supervisor/supervisor.hpp"

#include <boost/outcome/try.hpp>

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

  task<result<void>> handle_call(context&, terminate_req req) {
    if (!children_.contains(req.child))
      co_return error{errc::not_found, req.child.to_string() + " is not a child of " + name_};
    std::vector<pid> one{req.child};
    co_await shut_down(one);
    children_.erase(req.child);
    co_return outcome::success();
  }

  std::vector<child_info> handle_call(context&, which_req) {
    std::vector<child_info> out;
    for (const auto& [p, args] : children_)
      out.push_back(child_info{spec_.id, p, spec_.type, false});
    for (std::size_t i = 0; i < retrying_.size(); ++i)
      out.push_back(child_info{spec_.id, std::nullopt, spec_.type, true});
    return out;
  }

  child_counts handle_call(context&, count_req) {
    const std::size_t n = children_.size() + retrying_.size();
    child_counts c{.specs = 1, .active = children_.size()};
    (spec_.type == child_type::supervisor ? c.supervisors : c.workers) = n;
    return c;
  }

  struct retry {
    std::uint64_t key;
  };

  task<void> handle_info(context& ctx, std::variant<exit_msg, retry> m) {
    std::tuple<Extra...> args;
    if (auto* e = std::get_if<exit_msg>(&m)) {
      auto found = children_.find(e->from);
      if (found == children_.end())
        co_return; // not ours: ignored, as OTP does
      args = std::move(found->second);
      children_.erase(found);
      const bool again = must_restart(spec_.restart, e->reason);
      if (again || !e->reason.is_normal_or_shutdown())
        report("child_terminated", e->from, e->reason);
      if (!again)
        co_return;
    } else {
      auto found = retrying_.find(std::get<retry>(m).key);
      if (found == retrying_.end())
        co_return;
      args = std::move(found->second);
      retrying_.erase(found);
    }
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(this_scheduler().now().time_since_epoch());
    if (!window_.add(now.count())) {
      report("reached_max_restart_intensity", pid{}, exit_reason::shutdown());
      ctx.stop(exit_reason::shutdown());
      co_return;
    }
    auto r = co_await start(args);
    if (r) {
      children_.emplace(r.value(), std::move(args));
    } else if (r.error() != errc::ignored) {
      report("start_error", pid{}, r.error().reason.is_normal() ? exit_reason::error(r.error().message()) : r.error().reason);
      const std::uint64_t key = ++next_key_;
      retrying_.emplace(key, std::move(args));
      otp::send(ctx.self(), retry{key}); // counted again when retried
    }
  }

  // Children stop all at once, with one shared timeout (OTP_SEMANTICS.md 2).
  task<void> terminate(context&, const exit_reason&) {
    std::vector<pid> all;
    for (const auto& [p, args] : children_)
      all.push_back(p);
    co_await shut_down(all);
    children_.clear();
    retrying_.clear();
  }

private:

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

  task<void> shut_down(std::vector<pid> targets) {
    const shutdown_policy sp = spec_.shutdown ? *spec_.shutdown : child_spec::default_shutdown(spec_.type);
    auto stopping = detail::shut_down(std::move(targets), sp);
    const auto ended = co_await stopping;
    for (const auto& [p, why] : ended)
      if (!clean_shutdown(sp, spec_.restart, why))
        report("shutdown_error", p, why);
  }

  void report(std::string_view kind, const pid& p, const exit_reason& why) const {
    if (!log_enabled(log_level::error))
      return;
    log(log_level::error, "supervisor", kind,
        "supervisor " + name_ + ": child '" + spec_.id + "'"
          + (p ? " " + p.to_string() : std::string()) + " (" + to_string(spec_.restart) + "): " + why.to_string());
  }

  dynamic_supervisor_flags flags_;
  dynamic_child_spec<Extra...> spec_;
  restart_window window_;
  std::string name_;
  std::unordered_map<pid, std::tuple<Extra...>> children_;
  std::unordered_map<std::uint64_t, std::tuple<Extra...>> retrying_; // failed restarts, retried by message
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
task<result<void>> terminate_child(const dynamic_supervisor_ref<Extra...>& sup, pid child) {
  using module = detail::dyn_sup_module<Extra...>;
  auto calling = gen_server::call<module>(destination(sup.pid()), typename module::terminate_req{child}, otp::infinity);
  co_return co_await calling;
}

/// Returns the children (in no particular order).
template <class... Extra>
task<result<std::vector<child_info>>> which_children(const dynamic_supervisor_ref<Extra...>& sup) {
  using module = detail::dyn_sup_module<Extra...>;
  auto calling = gen_server::call<module>(destination(sup.pid()), typename module::which_req{}, otp::infinity);
  co_return co_await calling;
}

/// Returns the counts of children.
template <class... Extra>
task<result<child_counts>> count_children(const dynamic_supervisor_ref<Extra...>& sup) {
  using module = detail::dyn_sup_module<Extra...>;
  auto calling = gen_server::call<module>(destination(sup.pid()), typename module::count_req{}, otp::infinity);
  co_return co_await calling;
}

} // namespace dynamic_supervisor

} // namespace otp
