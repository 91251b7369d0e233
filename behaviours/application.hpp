// SPDX-License-Identifier: Apache-2.0
// behaviours/application.hpp - applications (OTP's application behaviour and
// application controller): a top supervisor started and stopped as a unit,
// dependencies, start types, and per-application environment.
#pragma once

#include "behaviours/gen_server.hpp"
#include "otp/node.hpp"
#include "supervisor/config.hpp"

#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace otp {

/// What the termination of a running application does (application:start/2).
enum class start_type : std::uint8_t {
  temporary, ///< it is only reported
  transient, ///< an abnormal exit stops every application and the node
  permanent, ///< any exit stops every application and the node
};

/// An application: how to start its top supervisor, what it needs running
/// first, its environment, and its prep_stop / stop callbacks.
struct application_spec {
  std::string name;
  std::string description;
  std::vector<std::string> applications; ///< must be running before it starts
  json env = json::object();
  /// Starts the top supervisor linked to the caller (Module:start/2).
  std::function<task<result<pid>>()> start;
  std::function<void()> prep_stop; ///< before the tree is shut down
  std::function<void()> stop;      ///< after the tree is gone
};

/// Returns the application a loaded config describes: its top supervisor
/// starts the config's children.
[[nodiscard]] application_spec application_from_config(app_config cfg);

namespace detail {
struct app_master;
} // namespace detail

/// A node's applications (OTP's application controller).
///
/// @par Thread safety
/// Every function is safe from any thread; start and stop must be awaited
/// from a process.
class applications {
public:
  explicit applications(node& n) : node_(n) {}
  applications(const applications&) = delete;
  applications& operator=(const applications&) = delete;

  /// Returns the applications of node `n`.
  [[nodiscard]] static applications& of(node& n) { return n.service<applications>(); }

  /// Makes an application known (application:load/1). Fails with
  /// `invalid_argument` (no name or no start function) or `already_started`.
  result<void> load(application_spec spec);

  /// Starts a loaded application (application:start/2). Its dependencies
  /// must be running: otherwise `not_found`, naming the first that is not.
  task<result<void>> start(std::string name, start_type type = start_type::temporary);

  /// Starts the application after the dependencies that are not running yet,
  /// depth first (application:ensure_all_started/2).
  task<result<void>> ensure_all_started(std::string name, start_type type = start_type::temporary);

  /// Stops a running application: prep_stop, the whole tree in reverse start
  /// order, then stop (application:stop/1). Other applications are not affected.
  task<result<void>> stop(std::string name);

  /// Stops every running application, the last started first.
  task<void> stop_all();

  /// Returns the running applications, in start order.
  [[nodiscard]] std::vector<std::string> running() const;

  /// Returns `key` of the application's environment (application:get_env/2).
  [[nodiscard]] std::optional<json> get_env(std::string_view app, std::string_view key) const;

  /// Calls `f` (on some process's thread) when a permanent application, or a
  /// transient one abnormally, has terminated and every application was
  /// stopped: the node should stop (OTP stops the node itself).
  void on_node_stop(std::function<void()> f);
  /// Returns whether that has happened.
  [[nodiscard]] bool node_stop_requested() const;

  /// @private Called by an application's master when its top supervisor exited on its own.
  void terminated(const std::string& name, start_type type, const exit_reason& why);
  /// @private Called once every application was stopped after a fatal termination.
  void all_stopped_after_failure();

private:
  struct running_app {
    std::string name;
    pid master;
    start_type type;
  };

  node& node_;
  mutable std::mutex mutex_;
  std::vector<application_spec> loaded_;
  std::vector<running_app> running_;
  std::function<void()> on_node_stop_;
  bool node_stop_ = false;
};

/// The application in `config_path` runs on a new node until it terminates or
/// the process gets SIGINT or SIGTERM; then every application is stopped in
/// order and the node shut down. The application (and those it needs) start
/// as `permanent`. Returns 0 after a stop by signal; 1 if the file is
/// invalid, the start failed, or the application ended on its own. Errors
/// go to stderr.
int run_application(const std::string& config_path, const start_table& table, node_options options = {});

/// Runs an application already loaded (and perhaps adjusted) from a config,
/// as run_application(path, ...) does after loading.
int run_application(app_config config, node_options options = {});

} // namespace otp
