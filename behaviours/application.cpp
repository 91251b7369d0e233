// SPDX-License-Identifier: Apache-2.0
#include "behaviours/application.hpp"

#include "otp/logger.hpp"
#include "otp/process.hpp"
#include "otp/receive.hpp"

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <future>

namespace otp {

namespace detail {

namespace {
struct stop_app {};
} // namespace

// One per running application (OTP's application master): starts the top
// supervisor linked to itself and watches it.
struct app_master {
  applications* controller;
  application_spec spec;
  start_type type;
  pid top;

  app_master(applications* c, application_spec s, start_type t) : controller(c), spec(std::move(s)), type(t) {}

  task<init_result> init(context&) {
    otp::trap_exit(true);
    auto starting = spec.start();
    auto r = co_await starting;
    if (!r)
      co_return init_result::stop(r.error().reason.is_normal() ? exit_reason::error(r.error().message())
                                                                : r.error().reason);
    top = r.value();
    co_return init_result::ok();
  }

  // An explicit stop: prep_stop, the tree, stop (OTP's application:stop/1).
  task<bool> handle_call(context& ctx, stop_app) {
    if (spec.prep_stop)
      spec.prep_stop();
    auto stopping = detail::shut_down({top}, shutdown_policy(otp::infinity)); // a supervisor's shutdown
    (void)co_await stopping;
    if (spec.stop)
      spec.stop();
    ctx.stop();
    co_return true;
  }

  void handle_info(context& ctx, exit_msg e) {
    if (e.from != top)
      return;
    // The top supervisor ended on its own: the start type decides what follows.
    if (spec.stop)
      spec.stop();
    controller->terminated(spec.name, type, e.reason);
    ctx.stop();
  }
};

} // namespace detail

application_spec application_from_config(app_config cfg) {
  application_spec spec;
  spec.name = cfg.application;
  spec.description = cfg.description;
  spec.applications = cfg.applications;
  spec.env = cfg.env;
  spec.start = [flags = cfg.flags, children = std::move(cfg.children),
                name = cfg.name ? std::optional<server_name>(*cfg.name) : std::nullopt]() {
    return supervisor::start_link(flags, children, name);
  };
  return spec;
}

result<void> applications::load(application_spec spec) {
  if (spec.name.empty())
    return error{errc::invalid_argument, "application::load: the application has no name"};
  if (!spec.start)
    return error{errc::invalid_argument, "application '" + spec.name + "' has no start function"};
  std::lock_guard lock(mutex_);
  for (const auto& a : loaded_)
    if (a.name == spec.name)
      return error{errc::already_started, "application '" + spec.name + "' is already loaded"};
  loaded_.push_back(std::move(spec));
  return outcome::success();
}

task<result<void>> applications::start(std::string name, start_type type) {
  application_spec spec;
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(loaded_.begin(), loaded_.end(), [&](const auto& a) { return a.name == name; });
    if (it == loaded_.end())
      co_return error{errc::not_found, "application '" + name + "' is not loaded"};
    if (std::any_of(running_.begin(), running_.end(), [&](const auto& r) { return r.name == name; }))
      co_return error{errc::already_started, "application '" + name + "' is already running"};
    for (const auto& dep : it->applications) {
      if (std::none_of(running_.begin(), running_.end(), [&](const auto& r) { return r.name == dep; }))
        co_return error{errc::not_found, "application '" + name + "' needs '" + dep + "', which is not running"};
    }
    spec = *it;
  }
  // The master is a gen_server that starts the tree in its init.
  const gen_server::start_options opts{};
  auto starting = gen_server::start_opt<detail::app_master>(opts, this, spec, type);
  auto r = co_await starting;
  if (!r) {
    log(log_level::error, "application", "start_error", "application '" + name + "' failed to start: " + r.error().message());
    co_return std::move(r).error();
  }
  {
    std::lock_guard lock(mutex_);
    running_.push_back(running_app{name, r.value().pid(), type});
  }
  log(log_level::info, "application", "started", "application '" + name + "' started");
  co_return outcome::success();
}

task<result<void>> applications::ensure_all_started(std::string name, start_type type) {
  std::vector<std::string> deps;
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(loaded_.begin(), loaded_.end(), [&](const auto& a) { return a.name == name; });
    if (it == loaded_.end())
      co_return error{errc::not_found, "application '" + name + "' is not loaded"};
    if (std::any_of(running_.begin(), running_.end(), [&](const auto& r) { return r.name == name; }))
      co_return outcome::success();
    deps = it->applications;
  }
  for (const auto& d : deps) {
    auto r = co_await ensure_all_started(d, type);
    if (!r)
      co_return std::move(r).error();
  }
  co_return co_await start(name, type);
}

task<result<void>> applications::stop(std::string name) {
  pid master;
  {
    std::lock_guard lock(mutex_);
    auto it = std::find_if(running_.begin(), running_.end(), [&](const auto& r) { return r.name == name; });
    if (it == running_.end())
      co_return error{errc::not_found, "application '" + name + "' is not running"};
    master = it->master;
    running_.erase(it);
  }
  auto stopping = gen_server::call<detail::app_master>(master, detail::stop_app{}, otp::infinity);
  auto r = co_await stopping;
  log(log_level::info, "application", "stopped", "application '" + name + "' stopped");
  if (!r && r.error() != errc::exited)
    co_return std::move(r).error();
  co_return outcome::success();
}

task<void> applications::stop_all() {
  for (;;) {
    std::string last;
    {
      std::lock_guard lock(mutex_);
      if (running_.empty())
        co_return;
      last = running_.back().name;
    }
    (void)co_await stop(last);
  }
}

std::vector<std::string> applications::running() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> out;
  for (const auto& r : running_)
    out.push_back(r.name);
  return out;
}

std::optional<json> applications::get_env(std::string_view app, std::string_view key) const {
  std::lock_guard lock(mutex_);
  for (const auto& a : loaded_) {
    if (a.name == app) {
      auto it = a.env.find(key);
      if (it == a.env.end())
        return std::nullopt;
      return *it;
    }
  }
  return std::nullopt;
}

void applications::on_node_stop(std::function<void()> f) {
  std::lock_guard lock(mutex_);
  on_node_stop_ = std::move(f);
}

bool applications::node_stop_requested() const {
  std::lock_guard lock(mutex_);
  return node_stop_;
}

namespace {

task<void> stop_everything(applications* apps) {
  co_await apps->stop_all();
  apps->all_stopped_after_failure();
}

} // namespace

void applications::all_stopped_after_failure() {
  std::function<void()> f;
  {
    std::lock_guard lock(mutex_);
    node_stop_ = true;
    f = on_node_stop_;
  }
  if (f)
    f();
}

void applications::terminated(const std::string& name, start_type type, const exit_reason& why) {
  {
    std::lock_guard lock(mutex_);
    std::erase_if(running_, [&](const auto& r) { return r.name == name; });
  }
  const char* type_name = type == start_type::permanent   ? "permanent"
                          : type == start_type::transient ? "transient"
                                                          : "temporary";
  log(log_level::notice, "application", "exited",
      "application '" + name + "' exited with " + why.to_string() + " (type " + type_name + ")");
  // docs/otp_semantics.md 12: permanent, or transient ending abnormally, takes everything down.
  const bool fatal = type == start_type::permanent || (type == start_type::transient && !why.is_normal());
  if (fatal)
    otp::spawn(stop_everything, this);
}

// ------------------------------------------------------------ run from file

namespace {

task<void> boot(applications* apps, std::string name, std::promise<result<void>>* started) {
  auto r = co_await apps->ensure_all_started(name, start_type::permanent);
  started->set_value(r);
}

task<void> shut_all(applications* apps, std::promise<void>* done) {
  co_await apps->stop_all();
  done->set_value();
}

} // namespace

int run_application(const std::string& config_path, const start_table& table, node_options options) {
  auto cfg = read_app_config(config_path, table);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error().message().c_str());
    return 1;
  }
  return run_application(std::move(cfg).value(), options);
}

int run_application(app_config config, node_options options) {
  const std::string name = config.application;

  // The main thread waits for SIGINT/SIGTERM or for the application's end.
  asio::io_context waiter;
  asio::signal_set signals(waiter, SIGINT, SIGTERM);
  bool by_signal = false;
  signals.async_wait([&](const std::error_code& ec, int) {
    if (!ec)
      by_signal = true;
    waiter.stop();
  });

  node n(options);
  auto& apps = applications::of(n);
  apps.on_node_stop([&waiter] { asio::post(waiter, [&waiter] { waiter.stop(); }); });
  if (auto r = apps.load(application_from_config(std::move(config))); !r) {
    std::fprintf(stderr, "%s\n", r.error().message().c_str());
    return 1;
  }
  std::promise<result<void>> started;
  auto started_f = started.get_future();
  n.spawn(boot, &apps, name, &started);
  if (auto r = started_f.get(); !r) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), r.error().message().c_str());
    return 1;
  }
  auto work = asio::make_work_guard(waiter);
  waiter.run();

  std::promise<void> done;
  auto done_f = done.get_future();
  n.spawn(shut_all, &apps, &done);
  done_f.get();
  const bool failed = apps.node_stop_requested() && !by_signal;
  n.shutdown();
  return failed ? 1 : 0;
}

} // namespace otp
