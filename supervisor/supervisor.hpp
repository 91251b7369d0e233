// SPDX-License-Identifier: Apache-2.0
// supervisor/supervisor.hpp - OTP's supervisor: children started in order
// from child specs, restarted by strategy within a restart intensity.
#pragma once

#include "behaviours/gen_server.hpp"
#include "registry/name.hpp"
#include "supervisor/child_spec.hpp"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace otp {

/// One child as which_children reports it (supervisor:which_children/1).
struct child_info {
  std::string id;
  std::optional<otp::pid> pid; ///< empty: not running (OTP's `undefined`) or restarting
  child_type type = child_type::worker;
  bool restarting = false;
};

/// What count_children reports (supervisor:count_children/1).
struct child_counts {
  std::size_t specs = 0;
  std::size_t active = 0;
  std::size_t supervisors = 0;
  std::size_t workers = 0;
};

namespace detail {

template <class M, class... A>
task<result<pid>> start_gen_server_child(gen_server::start_options o, std::tuple<A...> args) {
  auto starting = std::apply([&o](A&... a) { return gen_server::start_opt<M>(o, a...); }, args);
  auto r = co_await starting;
  if (!r)
    co_return std::move(r).error();
  co_return r.value().pid();
}

template <class F, class... A>
task<result<pid>> start_process_child(F f, std::tuple<A...> args) {
  const pid p = std::apply([&f](A&... a) { return otp::spawn_link(f, a...); }, args);
  co_return p;
}

} // namespace detail

/// Returns a start function for a gen_server child of module M, started
/// linked with copies of `args` (a worker's `start`).
template <class M, class... A>
[[nodiscard]] start_fn worker(A... args) {
  return [args = std::make_tuple(std::move(args)...)]() {
    return detail::start_gen_server_child<M, A...>(gen_server::start_options{.link = true}, args);
  };
}

/// Returns a start function for a gen_server child of module M registered as `name`.
template <class M, class... A>
[[nodiscard]] start_fn named_worker(server_name name, A... args) {
  return [name = std::move(name), args = std::make_tuple(std::move(args)...)]() {
    return detail::start_gen_server_child<M, A...>(gen_server::start_options{.name = name, .link = true}, args);
  };
}

/// Returns a start function that spawns `f(args...)` linked: a plain process as a child.
template <class F, class... A>
[[nodiscard]] start_fn process_worker(F f, A... args) {
  return [f = std::move(f), args = std::make_tuple(std::move(args)...)]() {
    return detail::start_process_child<F, A...>(f, args);
  };
}

namespace detail {
class sup_module;

/// Stops `children` as docs/otp_semantics.md 5 says, all at once: monitor each,
/// send `shutdown` (`kill` for brutal_kill), wait for every DOWN against one
/// deadline, then `kill` those left; then unlink each and take its 'EXIT',
/// whose reason wins over a DOWN `noproc`. Returns each child's exit reason.
/// A supervisor stops its children one at a time by calling it with one.
task<std::vector<std::pair<pid, exit_reason>>> shut_down(std::vector<pid> children, shutdown_policy how);

// The run-time requests every supervisor answers, the static and the dynamic
// kind alike (OTP's supervisor API works on both). They travel as plain
// messages, not gen_server calls, whose envelopes are typed by module.
struct sup_start_req {
  from<result<pid>> to;
  child_spec spec;
};
struct sup_terminate_req {
  from<result<void>> to;
  std::string id;
};
struct sup_restart_req {
  from<result<pid>> to;
  std::string id;
};
struct sup_delete_req {
  from<result<void>> to;
  std::string id;
};
struct sup_which_req {
  from<std::vector<child_info>> to;
};
struct sup_count_req {
  from<child_counts> to;
};

/// A supervisor report (OTP's SUPERVISOR REPORT): one `otp::log` event of
/// domain "supervisor" whose fields are OTP's report keys ("supervisor",
/// "errorContext", "reason", "offender.pid" or "offender.nb_children",
/// "offender.id", "offender.restart_type", "offender.significant",
/// "offender.shutdown", "offender.child_type") and whose text prints them
/// as OTP's multi-line report does.
struct sup_report {
  std::string_view supervisor;
  std::string_view kind;    ///< the log event's kind
  std::string_view context; ///< OTP's errorContext (`shutdown` for reached_max_restart_intensity)
  std::string reason;
  std::string offender_pid; ///< a pid, `undefined` or `{restarting,Pid}`
  std::optional<std::size_t> nb_children{}; ///< instead of the pid, for dynamic children stopped together
  std::string_view id;
  restart_type restart = restart_type::permanent;
  bool significant = false;
  shutdown_policy shutdown = otp::infinity;
  child_type type = child_type::worker;
};
void report(const sup_report& r);

/// Returns the reason term of a failed start: the exit reason for `exited`,
/// the error's message otherwise (OTP reports the start's `{error, Reason}`).
[[nodiscard]] std::string start_reason(const error& e);
/// Returns `Pid`, `undefined` or `{restarting,Pid}` as OTP prints a child's pid.
[[nodiscard]] std::string pid_term(const std::optional<pid>& p, bool restarting = false);
} // namespace detail

/// OTP's supervisor module: start, and manage children at run time.
///
/// Every function must be called from a process. With g++ 12, build the
/// vector of specs before the `co_await` (no braced lists inside it).
namespace supervisor {

/// Starts a supervisor linked to the caller and returns once every child
/// started, in order (supervisor:start_link/3). The specs are checked
/// first (`invalid_child_spec`, naming the child and the field). If a child
/// fails to start, the ones already started are stopped in reverse order and
/// start fails with `exited`, reason `{shutdown, failed_to_start_child ...}`.
task<result<pid>> start_link(supervisor_flags flags, std::vector<child_spec> children,
                             std::optional<server_name> name = std::nullopt);

/// Returns a start function for a supervisor child (type supervisor).
[[nodiscard]] start_fn starter(supervisor_flags flags, std::vector<child_spec> children,
                               std::optional<server_name> name = std::nullopt);

/// Adds and starts a child (supervisor:start_child/2). Fails with
/// `invalid_child_spec` for a bad spec (a significant child under
/// auto_shutdown `never` too), `already_started` if the id exists (running
/// or not), or the start's own error; the spec is then not kept. A start
/// that returned `ignored` (OTP's `{ok, undefined}`) fails with `ignored`,
/// and the spec is kept, not running, unless the child is temporary.
/// On a dynamic supervisor: `sup_errc::simple_one_for_one` (use
/// dynamic_supervisor::start_child).
task<result<pid>> start_child(destination sup, child_spec spec);
/// Stops a child and keeps its spec (a temporary child's is removed); a
/// child waiting for a restart retry stays stopped. Fails with `not_found`
/// for an unknown id, `sup_errc::simple_one_for_one` on a dynamic supervisor.
task<result<void>> terminate_child(destination sup, std::string id);
/// Starts a stopped child again from its spec. Fails with `not_found`,
/// `running` if it runs, `sup_errc::restarting` if it waits for a restart
/// retry, `ignored` if the start ignored (the child stays, not running),
/// `sup_errc::simple_one_for_one` on a dynamic supervisor, or the start's error.
task<result<pid>> restart_child(destination sup, std::string id);
/// Removes a stopped child's spec. Fails with `not_found`, `running`,
/// `sup_errc::restarting`, or `sup_errc::simple_one_for_one` on a dynamic supervisor.
task<result<void>> delete_child(destination sup, std::string id);
/// Returns the children, in start order (a dynamic supervisor's in no order).
task<result<std::vector<child_info>>> which_children(destination sup);
/// Returns the counts of specs, running children, supervisors and workers.
task<result<child_counts>> count_children(destination sup);

} // namespace supervisor

} // namespace otp
