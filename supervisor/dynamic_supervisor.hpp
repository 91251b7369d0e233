// SPDX-License-Identifier: Apache-2.0
// supervisor/dynamic_supervisor.hpp - children started at run time from one
// template (OTP's simple_one_for_one, Elixir's DynamicSupervisor).
#pragma once

#include "otp/receive.hpp"
#include "supervisor/restart_window.hpp"
#include "supervisor/supervisor.hpp"

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <typeinfo>
#include <unordered_map>
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

// A dynamic supervisor does not depend on its children's argument types:
// they travel type-erased, so that the supervisor is compiled once
// (dynamic_supervisor.cpp), not in every file that starts one.

// The arguments of one child (a std::tuple<Extra...>), kept for its
// restarts, and their type. Move-only, and without a vtable: UBSan's vptr
// check of a polymorphic owner (a shared_ptr's control block) needs a free
// file descriptor, and kvstore's tests run out of them on purpose
// (docs/design.md, Toolchain pitfalls).
class dyn_args {
public:
  dyn_args() noexcept = default;
  template <class... Extra>
  [[nodiscard]] static dyn_args make(Extra... extra) {
    dyn_args a;
    a.values_ = new std::tuple<Extra...>(std::move(extra)...);
    a.destroy_ = [](void* p) noexcept { delete static_cast<std::tuple<Extra...>*>(p); };
    a.type_ = &typeid(std::tuple<Extra...>);
    return a;
  }
  dyn_args(dyn_args&& o) noexcept
    : values_(std::exchange(o.values_, nullptr)), destroy_(o.destroy_), type_(o.type_) {}
  dyn_args& operator=(dyn_args&& o) noexcept {
    if (this != &o) {
      reset();
      values_ = std::exchange(o.values_, nullptr);
      destroy_ = o.destroy_;
      type_ = o.type_;
    }
    return *this;
  }
  dyn_args(const dyn_args&) = delete;
  dyn_args& operator=(const dyn_args&) = delete;
  ~dyn_args() { reset(); }

  [[nodiscard]] const void* values() const noexcept { return values_; }
  [[nodiscard]] const std::type_info& type() const noexcept { return *type_; }

private:
  void reset() noexcept {
    if (values_ != nullptr)
      destroy_(values_);
    values_ = nullptr;
  }
  void* values_ = nullptr;
  void (*destroy_)(void*) noexcept = nullptr;
  const std::type_info* type_ = &typeid(void);
};

// A dynamic_child_spec whose start function takes the erased arguments.
struct dyn_template {
  std::string id;
  std::function<task<result<pid>>(const void* args)> start; // empty if the spec's is
  const std::type_info* args_type = nullptr;
  restart_type restart = restart_type::permanent;
  std::optional<shutdown_policy> shutdown{};
  child_type type = child_type::worker;
  bool significant = false;
};

template <class... Extra>
[[nodiscard]] dyn_template erase_template(dynamic_child_spec<Extra...> spec) {
  dyn_template t{.id = std::move(spec.id),
                 .start = {},
                 .args_type = &typeid(std::tuple<Extra...>),
                 .restart = spec.restart,
                 .shutdown = spec.shutdown,
                 .type = spec.type,
                 .significant = spec.significant};
  if (spec.start)
    t.start = [f = std::move(spec.start)](const void* args) {
      return std::apply(f, *static_cast<const std::tuple<Extra...>*>(args));
    };
  return t;
}

// The gen_server module of every dynamic supervisor.
class dyn_sup_module {
public:
  struct start_req {
    dyn_args args;
  };
  struct terminate_req {
    pid child;
  };
  struct which_req {};
  struct count_req {};
  struct retry {
    std::uint64_t key;
  };
  using info = std::variant<exit_msg, retry, sup_start_req, sup_terminate_req, sup_restart_req, sup_delete_req,
                            sup_which_req, sup_count_req>;

  dyn_sup_module(dynamic_supervisor_flags flags, dyn_template spec, std::string name);

  void init(context& ctx);
  task<result<pid>> handle_call(context& ctx, start_req req);
  task<result<void>> handle_call(context& ctx, terminate_req req);
  std::vector<child_info> handle_call(context& ctx, which_req req);
  child_counts handle_call(context& ctx, count_req req);
  task<void> handle_info(context& ctx, info m);
  task<void> terminate(context& ctx, const exit_reason& why);

private:
  // A child whose restart failed, until its retry (OTP's {restarting, OldPid}).
  struct waiting {
    pid old;
    dyn_args args;
  };

  void answer_generic(info& m);
  [[nodiscard]] std::vector<child_info> which() const;
  [[nodiscard]] child_counts counts() const;
  task<void> child_exited(context& ctx, const exit_msg& e);
  task<void> restart(context& ctx, dyn_args args, pid old, bool is_retry);
  task<result<pid>> start(const dyn_args& args);
  [[nodiscard]] shutdown_policy shutdown_policy_of() const;
  task<void> shut_down(std::vector<pid> targets);
  void report(std::string_view kind, std::string reason, std::string offender_pid, std::string_view context = {},
              std::optional<std::size_t> nb_children = std::nullopt) const;

  dynamic_supervisor_flags flags_;
  dyn_template spec_;
  restart_window window_;
  std::string name_;
  std::unordered_map<pid, dyn_args> children_;
  std::unordered_map<std::uint64_t, waiting> retrying_; // failed restarts, retried by message
  std::uint64_t next_key_ = 0;
};

// The parts of the API below that do not depend on the argument types.
task<result<pid>> start_dynamic_supervisor(dynamic_supervisor_flags flags, dyn_template spec,
                                           std::optional<server_name> name);
task<result<pid>> dyn_start_child(pid sup, dyn_args args);
task<result<void>> dyn_terminate_child(pid sup, pid child);
task<result<std::vector<child_info>>> dyn_which_children(pid sup);
task<result<child_counts>> dyn_count_children(pid sup);

} // namespace detail

/// Dynamic supervisors: start, and add children at run time.
namespace dynamic_supervisor {

/// Starts a dynamic supervisor linked to the caller (no children yet).
/// Fails with `invalid_child_spec` for a bad template or flags.
template <class... Extra>
task<result<dynamic_supervisor_ref<Extra...>>> start_link(dynamic_supervisor_flags flags,
                                                          dynamic_child_spec<Extra...> spec,
                                                          std::optional<server_name> name = std::nullopt) {
  auto starting = detail::start_dynamic_supervisor(flags, detail::erase_template(std::move(spec)), std::move(name));
  auto r = co_await starting;
  if (!r)
    co_return std::move(r).error();
  co_return dynamic_supervisor_ref<Extra...>(r.value());
}

/// Returns a start function for a dynamic supervisor as a child of another
/// supervisor (give the spec `type = child_type::supervisor`).
template <class... Extra>
[[nodiscard]] start_fn starter(dynamic_supervisor_flags flags, dynamic_child_spec<Extra...> spec,
                               std::optional<server_name> name = std::nullopt) {
  return [flags, t = detail::erase_template(std::move(spec)), name = std::move(name)]() {
    return detail::start_dynamic_supervisor(flags, t, name);
  };
}

/// Starts a child of `sup` from its template with `extra` (start_child of a
/// simple_one_for_one supervisor). Fails with `invalid_argument` at
/// max_children, `ignored` if the start ignored, `bad_request` if the
/// supervisor's children take other arguments (a ref rebuilt with the wrong
/// types), or the start's error. For a supervisor known by name, build the
/// ref from `whereis`.
template <class... Extra>
task<result<pid>> start_child(dynamic_supervisor_ref<Extra...> sup, std::type_identity_t<Extra>... extra) {
  return detail::dyn_start_child(sup.pid(), detail::dyn_args::make<Extra...>(std::move(extra)...));
}

/// Stops the child `child` (its restart does not count).
template <class... Extra>
task<result<void>> terminate_child(dynamic_supervisor_ref<Extra...> sup, pid child) {
  return detail::dyn_terminate_child(sup.pid(), child);
}

/// Returns the children (in no particular order).
template <class... Extra>
task<result<std::vector<child_info>>> which_children(dynamic_supervisor_ref<Extra...> sup) {
  return detail::dyn_which_children(sup.pid());
}

/// Returns the counts of children.
template <class... Extra>
task<result<child_counts>> count_children(dynamic_supervisor_ref<Extra...> sup) {
  return detail::dyn_count_children(sup.pid());
}

} // namespace dynamic_supervisor

} // namespace otp
