// SPDX-License-Identifier: Apache-2.0
// docs/otp_semantics.md point 12: applications, their dependencies, start types,
// and what stopping one does; run_application from a file.
#include "behaviours/application.hpp"

#include "otp/logger.hpp"
#include "otp/otp.hpp"
#include "registry/registry.hpp"

#include <doctest/doctest.h>

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

namespace {

struct logged {
  std::vector<std::string>* log;
  std::string name;
  logged(std::vector<std::string>* l, std::string n) : log(l), name(std::move(n)) { log->push_back("start " + name); }
  logged(const logged&) = delete;
  logged& operator=(const logged&) = delete;
  ~logged() { log->push_back("stop " + name); }
};

// An application whose top supervisor has two named workers `<name>_a`, `<name>_b`.
otp::application_spec app(std::vector<std::string>* log, const std::string& name, std::vector<std::string> deps = {},
                          int intensity = 1) {
  otp::application_spec s;
  s.name = name;
  s.applications = std::move(deps);
  s.env = {{"colour", name + "-blue"}};
  s.start = [log, name, intensity]() {
    std::vector<otp::child_spec> kids{
      {.id = "a", .start = otp::named_worker<logged>(name + "_a", log, name + "_a")},
      {.id = "b", .start = otp::named_worker<logged>(name + "_b", log, name + "_b")}};
    return otp::supervisor::start_link({.intensity = intensity}, kids);
  };
  s.prep_stop = [log, name] { log->push_back("prep_stop " + name); };
  s.stop = [log, name] { log->push_back("stop_cb " + name); };
  return s;
}

template <class F>
void in_process(otp::node& n, F body) {
  n.spawn(std::move(body));
  n.run_until_idle();
}

} // namespace

TEST_SUITE_BEGIN("behaviours/application");

TEST_CASE("dependencies are checked by start and started by ensure_all_started, in order") {
  std::vector<std::string> log;
  otp::node n({.deterministic = true});
  auto& apps = otp::applications::of(n);
  REQUIRE(apps.load(app(&log, "db")));
  REQUIRE(apps.load(app(&log, "web", {"db"})));
  CHECK(apps.load(app(&log, "db")).error() == otp::errc::already_started);
  CHECK(apps.load(otp::application_spec{.name = "x"}).error() == otp::errc::invalid_argument);
  std::optional<otp::error> not_started;
  in_process(n, [&]() -> otp::task<void> {
    not_started = (co_await apps.start("web")).error();
    REQUIRE(co_await apps.ensure_all_started("web"));
  });
  REQUIRE(not_started);
  CHECK(*not_started == otp::errc::not_found);
  CHECK(not_started->context == "application 'web' needs 'db', which is not running");
  CHECK(log == std::vector<std::string>{"start db_a", "start db_b", "start web_a", "start web_b"});
  CHECK(apps.running() == std::vector<std::string>{"db", "web"});
  CHECK(apps.get_env("web", "colour") == otp::json("web-blue"));
}

TEST_CASE("stopping an application runs prep_stop, stops its tree in reverse, then stop; others run on") {
  std::vector<std::string> log;
  otp::node n({.deterministic = true});
  auto& apps = otp::applications::of(n);
  REQUIRE(apps.load(app(&log, "db")));
  REQUIRE(apps.load(app(&log, "web")));
  in_process(n, [&]() -> otp::task<void> {
    REQUIRE(co_await apps.start("db"));
    REQUIRE(co_await apps.start("web"));
    log.clear();
    REQUIRE(co_await apps.stop("db"));
    CHECK((co_await apps.stop("db")).error() == otp::errc::not_found);
  });
  CHECK(log == std::vector<std::string>{"prep_stop db", "stop db_b", "stop db_a", "stop_cb db"});
  CHECK(apps.running() == std::vector<std::string>{"web"});
  CHECK(otp::registry::of(n).whereis("web_a"));
  CHECK_FALSE(apps.node_stop_requested());
}

TEST_CASE("a temporary application that ends is only reported; a permanent one takes all down") {
  otp::set_log_level(otp::log_level::none);
  std::vector<std::string> log;
  otp::node n({.deterministic = true});
  auto& apps = otp::applications::of(n);
  bool node_stop = false;
  apps.on_node_stop([&] { node_stop = true; });
  REQUIRE(apps.load(app(&log, "tmp", {}, 0)));
  REQUIRE(apps.load(app(&log, "perm", {}, 0)));
  REQUIRE(apps.load(app(&log, "other")));
  in_process(n, [&]() -> otp::task<void> {
    REQUIRE(co_await apps.start("other", otp::start_type::permanent));
    REQUIRE(co_await apps.start("tmp", otp::start_type::temporary));
    REQUIRE(co_await apps.start("perm", otp::start_type::permanent));
  });
  // tmp's top supervisor gives up (intensity 0): tmp is gone, the rest run.
  n.exit(otp::registry::of(n).whereis("tmp_a").value(), otp::exit_reason::error("boom"));
  n.run_until_idle();
  CHECK(apps.running() == std::vector<std::string>{"other", "perm"});
  CHECK_FALSE(node_stop);
  // perm's does too: every application is stopped, and the node is told.
  log.clear();
  n.exit(otp::registry::of(n).whereis("perm_a").value(), otp::exit_reason::error("boom"));
  n.run_until_idle();
  CHECK(apps.running().empty());
  CHECK(node_stop);
  CHECK(apps.node_stop_requested());
  CHECK(std::find(log.begin(), log.end(), "stop other_a") != log.end());
  otp::set_log_level(otp::log_level::notice);
}

TEST_CASE("a transient application that ends normally is only reported; abnormally, it takes all down") {
  otp::set_log_level(otp::log_level::none);
  otp::node n({.deterministic = true});
  auto& apps = otp::applications::of(n);
  bool node_stop = false;
  apps.on_node_stop([&] { node_stop = true; });
  // Its "top" is a plain process that ends when told, with the reason it is told.
  auto ends_when_told = []() -> otp::task<otp::result<otp::pid>> {
    auto p = otp::spawn_link([]() -> otp::task<void> {
      (void)otp::register_name("job", otp::self());
      auto why = co_await otp::receive<std::string>();
      if (why != "normal")
        otp::exit(otp::exit_reason::error(why));
    });
    co_return p;
  };
  REQUIRE(apps.load(otp::application_spec{.name = "job", .start = ends_when_told}));
  REQUIRE(apps.load(otp::application_spec{.name = "job2", .start = ends_when_told}));
  in_process(n, [&]() -> otp::task<void> { REQUIRE(co_await apps.start("job", otp::start_type::transient)); });
  otp::send(otp::registry::of(n).whereis("job").value(), std::string("normal"));
  n.run_until_idle();
  CHECK(apps.running().empty());
  CHECK_FALSE(node_stop);
  in_process(n, [&]() -> otp::task<void> { REQUIRE(co_await apps.start("job2", otp::start_type::transient)); });
  otp::send(otp::registry::of(n).whereis("job").value(), std::string("crash"));
  n.run_until_idle();
  CHECK(node_stop);
  otp::set_log_level(otp::log_level::notice);
}

namespace {

struct ready_signal {
  static inline std::promise<void>* ready = nullptr;
  ready_signal() {
    if (ready != nullptr)
      ready->set_value();
  }
};

std::string write_file(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / (name + "-" + std::to_string(::getpid()) + ".json");
  std::ofstream(path) << text;
  return path.string();
}

} // namespace

TEST_CASE("run_application runs a file's tree until SIGTERM, then stops it in order") {
  otp::start_table table;
  table.worker<ready_signal>("ready");
  const auto path = write_file("run-app", R"({"application": "demo",
    "supervisor": {"children": [{"id": "r", "start": "ready", "name": "ready"}]}})");
  std::promise<void> ready;
  ready_signal::ready = &ready;
  auto runner = std::async(std::launch::async, [&] { return otp::run_application(path, table, {.schedulers = 2}); });
  ready.get_future().wait(); // the tree is up
  std::raise(SIGTERM);
  CHECK(runner.get() == 0);
  ready_signal::ready = nullptr;

  const auto bad = write_file("bad-app", R"({"application": "demo", "supervisor": {"intensity": -2}})");
  CHECK(otp::run_application(bad, table) == 1);
  CHECK(otp::run_application("/nonexistent.json", table) == 1);
  std::filesystem::remove(path);
  std::filesystem::remove(bad);
}

TEST_SUITE_END();
