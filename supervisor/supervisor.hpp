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

/// Stops `children` as OTP_SEMANTICS.md 5 says, all at once: monitor each,
/// send `shutdown` (`kill` for brutal_kill), wait for every DOWN against one
/// deadline, then `kill` those left; then unlink each and take its 'EXIT',
/// whose reason wins over a DOWN `noproc`. Returns each child's exit reason.
/// A supervisor stops its children one at a time by calling it with one.
task<std::vector<std::pair<pid, exit_reason>>> shut_down(std::vector<pid> children, shutdown_policy how);
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
/// `invalid_child_spec` for a bad spec, `already_started` if the id exists
/// (running or not), or the start's own error (the spec is then not kept,
/// unless the start returned `ignored`).
task<result<pid>> start_child(destination sup, child_spec spec);
/// Stops a child and keeps its spec (a temporary child's is removed).
/// Fails with `not_found` for an unknown id.
task<result<void>> terminate_child(destination sup, std::string id);
/// Starts a stopped child again from its spec. Fails with `not_found`, or
/// `running` if it runs.
task<result<pid>> restart_child(destination sup, std::string id);
/// Removes a stopped child's spec. Fails with `not_found`, or `running`.
task<result<void>> delete_child(destination sup, std::string id);
/// Returns the children, in start order.
task<result<std::vector<child_info>>> which_children(destination sup);
/// Returns the counts of specs, running children, supervisors and workers.
task<result<child_counts>> count_children(destination sup);

} // namespace supervisor

} // namespace otp
