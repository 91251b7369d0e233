// SPDX-License-Identifier: Apache-2.0
// docs/otp_semantics.md points 1 to 5 and 13: restart intensity, start and shutdown order,
// strategies, restart types, and how a child is terminated.
#include "supervisor/supervisor.hpp"

#include "otp/logger.hpp"
#include "otp/otp.hpp"
#include "registry/registry.hpp"
#include "tests/support/counted.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace sup = otp::supervisor;

namespace {

// A worker that records its start and the end of its state in a shared log.
struct recorded {
  std::vector<std::string>* log;
  std::string name;
  otp::test::counted alive;
  recorded(std::vector<std::string>* l, std::string n) : log(l), name(std::move(n)) {
    log->push_back("start " + name);
  }
  recorded(const recorded&) = delete;
  recorded& operator=(const recorded&) = delete;
  ~recorded() { log->push_back("stop " + name); }
  int handle_call(otp::context&, int x) { return x; }
};

// A worker that traps exits and takes `ms` of (virtual) time to terminate.
struct slow_to_stop {
  std::vector<std::string>* log;
  std::chrono::milliseconds ms;
  void init(otp::context&) { otp::trap_exit(true); }
  otp::task<void> terminate(otp::context&, const otp::exit_reason& why) {
    log->push_back("terminate " + why.to_string());
    co_await otp::sleep_for(ms);
    log->push_back("terminated");
  }
};

struct fails_to_start {
  otp::init_result init(otp::context&) { return otp::init_result::stop(otp::exit_reason::error("no_db")); }
};
struct ignores_start {
  otp::init_result init(otp::context&) { return otp::init_result::ignore(); }
};

// Captures the reports of one test; restores the default handler after.
struct captured_reports {
  std::vector<std::string> kinds;
  std::vector<std::string> texts;
  std::vector<std::vector<otp::log_field>> fields;
  captured_reports() {
    otp::set_log_handler([this](const otp::log_event& e) {
      kinds.emplace_back(e.kind);
      texts.push_back(e.text);
      fields.push_back(e.fields);
    });
  }
  // Returns field `key` of the `n`th report of `kind` (0-based), or "" if absent.
  [[nodiscard]] std::string field(std::string_view kind, std::size_t n, std::string_view key) const {
    for (std::size_t i = 0; i < kinds.size(); ++i) {
      if (kinds[i] != kind || n-- != 0)
        continue;
      for (const auto& f : fields[i])
        if (f.key == key)
          return f.value;
      return "";
    }
    return "";
  }
  ~captured_reports() { otp::set_log_handler({}); }
  [[nodiscard]] std::size_t count(std::string_view kind) const {
    return static_cast<std::size_t>(std::count(kinds.begin(), kinds.end(), kind));
  }
};

otp::child_spec recorded_child(std::vector<std::string>* log, const std::string& id,
                               otp::restart_type r = otp::restart_type::permanent) {
  return {.id = id, .start = otp::named_worker<recorded>(id, log, id), .restart = r};
}

// A deterministic node with a supervisor started by a parent that traps
// exits and records how the supervisor ended.
struct harness {
  std::vector<std::string> log; // before the node: children write to it as the node shuts down
  otp::node n{{.deterministic = true}};
  otp::pid parent;
  std::optional<otp::pid> sup;
  std::optional<otp::error> start_error;
  std::optional<otp::exit_reason> sup_exit;

  void start(otp::supervisor_flags flags, std::vector<otp::child_spec> specs) {
    parent = n.spawn([this, flags, specs]() -> otp::task<void> {
      otp::trap_exit(true);
      auto r = co_await sup::start_link(flags, specs);
      if (!r) {
        start_error = r.error();
        co_return;
      }
      sup = r.value();
      for (;;) {
        // "stop" from the test: shut the supervisor down as its parent does.
        auto m = co_await otp::receive([](otp::exit_msg e) { return std::optional<otp::exit_msg>(e); },
                                       [](std::string) { return std::optional<otp::exit_msg>(); });
        if (!m)
          otp::exit(*sup, otp::exit_reason::shutdown());
        else if (m->from == *sup) {
          sup_exit = m->reason;
          co_return;
        }
      }
    });
    n.run_until_idle();
  }

  void stop() {
    otp::send(parent, std::string("stop"));
    n.run_until_idle();
  }

  [[nodiscard]] otp::pid whereis(const std::string& name) {
    auto p = otp::registry::of(n).whereis(name);
    REQUIRE(p);
    return *p;
  }

  void crash(const std::string& name, otp::exit_reason why = otp::exit_reason::error("boom")) {
    n.exit(whereis(name), why);
    n.run_until_idle();
  }

  // Runs `body` in a process of the node and waits for it.
  template <class F>
  void in_process(F body) {
    n.spawn(std::move(body));
    n.run_until_idle();
  }
};

} // namespace

TEST_SUITE_BEGIN("supervisor/supervisor");

TEST_CASE("point 2: children start in order, and stop one at a time in reverse order") {
  otp::test::counted::reset();
  harness h;
  h.start({.strategy = otp::strategy::one_for_one},
          {recorded_child(&h.log, "a"), recorded_child(&h.log, "b"), recorded_child(&h.log, "c")});
  REQUIRE(h.sup);
  CHECK(h.log == std::vector<std::string>{"start a", "start b", "start c"});
  h.log.clear();
  h.stop();
  CHECK(h.log == std::vector<std::string>{"stop c", "stop b", "stop a"});
  CHECK(h.sup_exit == otp::exit_reason::shutdown());
  CHECK(otp::test::counted::alive() == 0);
}

TEST_CASE("point 2: a child that fails to start stops the ones started, and start fails") {
  captured_reports reports;
  harness h;
  h.start({}, {recorded_child(&h.log, "a"), recorded_child(&h.log, "b"),
               {.id = "db", .start = otp::worker<fails_to_start>()}, recorded_child(&h.log, "never")});
  REQUIRE(h.start_error);
  CHECK(*h.start_error == otp::errc::exited);
  CHECK(h.start_error->reason.is_shutdown());
  // OTP: {shutdown, {failed_to_start_child, db, no_db}}, and a report with the child's own reason.
  CHECK(h.start_error->reason.detail() == "{failed_to_start_child,db,no_db}");
  CHECK(h.log == std::vector<std::string>{"start a", "start b", "stop b", "stop a"});
  CHECK(reports.count("start_error") == 1);
  CHECK(reports.field("start_error", 0, "reason") == "no_db");
  CHECK(reports.field("start_error", 0, "offender.pid") == "undefined");
  CHECK(reports.field("start_error", 0, "offender.id") == "db");
  CHECK(h.n.process_count() == 0);
}

TEST_CASE("point 2: an ignored child keeps its spec, not running; a temporary one is dropped") {
  harness h;
  h.start({}, {{.id = "ign", .start = otp::worker<ignores_start>()},
               {.id = "tmp", .start = otp::worker<ignores_start>(), .restart = otp::restart_type::temporary},
               recorded_child(&h.log, "a")});
  REQUIRE(h.sup);
  std::vector<otp::child_info> kids;
  h.in_process([&]() -> otp::task<void> { kids = (co_await sup::which_children(*h.sup)).value(); });
  REQUIRE(kids.size() == 2);
  CHECK(kids[0].id == "ign");
  CHECK_FALSE(kids[0].pid);
  CHECK(kids[1].id == "a");
  CHECK(kids[1].pid);
}

TEST_CASE("point 1: more than `intensity` restarts within `period` stop the supervisor with shutdown") {
  captured_reports reports;
  harness h;
  h.start({.intensity = 1, .period = 5s}, {recorded_child(&h.log, "a"), recorded_child(&h.log, "b")});
  REQUIRE(h.sup);
  h.crash("b"); // first restart: tolerated
  CHECK_FALSE(h.sup_exit);
  h.n.advance(5s); // still inside the window (the boundary is inclusive)
  h.log.clear();
  h.crash("b"); // second within 5 s: too many
  REQUIRE(h.sup_exit);
  CHECK(*h.sup_exit == otp::exit_reason::shutdown());
  CHECK(h.log == std::vector<std::string>{"stop b", "stop a"});
  CHECK(reports.count("reached_max_restart_intensity") == 1);
  CHECK(reports.count("child_terminated") == 2);
  CHECK(h.n.process_count() == 0); // children, supervisor, and the parent that saw it go
}

TEST_CASE("point 1: restarts that leave the window no longer count; intensity 0 allows none") {
  harness h;
  h.start({.intensity = 1, .period = 5s}, {recorded_child(&h.log, "a")});
  h.crash("a");
  h.n.advance(6s); // the first restart is now older than the period
  h.crash("a");
  CHECK_FALSE(h.sup_exit);

  harness z;
  z.start({.intensity = 0}, {recorded_child(&z.log, "a")});
  z.crash("a");
  REQUIRE(z.sup_exit);
  CHECK(*z.sup_exit == otp::exit_reason::shutdown());
}

TEST_CASE("point 3: rest_for_one stops the later children in reverse, then restarts in order") {
  harness h;
  h.start({.strategy = otp::strategy::rest_for_one, .intensity = 10},
          {recorded_child(&h.log, "a"), recorded_child(&h.log, "b"), recorded_child(&h.log, "c"),
           recorded_child(&h.log, "d")});
  const auto a = h.whereis("a");
  h.log.clear();
  h.crash("b");
  CHECK(h.log == std::vector<std::string>{"stop b", "stop d", "stop c", "start b", "start c", "start d"});
  CHECK(h.whereis("a") == a); // earlier children untouched
}

TEST_CASE("point 3: one_for_all restarts every child; terminated temporary siblings are removed") {
  harness h;
  h.start({.strategy = otp::strategy::one_for_all, .intensity = 10},
          {recorded_child(&h.log, "a"), recorded_child(&h.log, "t", otp::restart_type::temporary),
           recorded_child(&h.log, "c")});
  h.log.clear();
  h.crash("c");
  CHECK(h.log == std::vector<std::string>{"stop c", "stop t", "stop a", "start a", "start c"});
  std::vector<otp::child_info> kids;
  h.in_process([&]() -> otp::task<void> { kids = (co_await sup::which_children(*h.sup)).value(); });
  REQUIRE(kids.size() == 2);
  CHECK(kids[0].id == "a");
  CHECK(kids[1].id == "c");
}

TEST_CASE("point 4: each restart type treats each exit reason as OTP does") {
  captured_reports reports;
  harness h;
  h.start({.intensity = 100},
          {recorded_child(&h.log, "perm"), recorded_child(&h.log, "trans", otp::restart_type::transient),
           recorded_child(&h.log, "temp", otp::restart_type::temporary)});
  SUBCASE("permanent: restarted even after normal") {
    const auto before = h.whereis("perm");
    h.crash("perm", otp::exit_reason::normal());
    // exit(Pid, normal) from another process is ignored: use the process's own exit.
    CHECK(h.whereis("perm") == before);
    h.log.clear();
    h.in_process([&]() -> otp::task<void> {
      CHECK((co_await otp::gen_server::stop(h.whereis("perm"))).has_value());
    });
    CHECK(h.log == std::vector<std::string>{"stop perm", "start perm"});
    CHECK(reports.count("child_terminated") == 1);
  }
  SUBCASE("transient: not after normal, shutdown or {shutdown,_}; restarted after killed") {
    h.log.clear();
    h.crash("trans", otp::exit_reason::shutdown("bye"));
    CHECK(h.log == std::vector<std::string>{"stop trans"});
    CHECK(reports.count("child_terminated") == 0); // a clean exit is silent
    std::optional<otp::pid> again;
    h.in_process([&]() -> otp::task<void> { again = (co_await sup::restart_child(*h.sup, "trans")).value(); });
    CHECK(again);
    h.log.clear();
    h.crash("trans", otp::exit_reason::kill());
    CHECK(h.log == std::vector<std::string>{"stop trans", "start trans"});
    CHECK(reports.count("child_terminated") == 1);
  }
  SUBCASE("temporary: never restarted, and its spec is removed") {
    h.log.clear();
    h.crash("temp");
    CHECK(h.log == std::vector<std::string>{"stop temp"});
    otp::child_counts counts;
    h.in_process([&]() -> otp::task<void> { counts = (co_await sup::count_children(*h.sup)).value(); });
    CHECK(counts.specs == 2);
    CHECK(counts.active == 2);
    CHECK(reports.count("child_terminated") == 1); // abnormal: reported
  }
}

TEST_CASE("point 4: an 'EXIT' from a process the supervisor does not know is ignored") {
  harness h;
  h.start({}, {recorded_child(&h.log, "a")});
  h.in_process([&]() -> otp::task<void> {
    otp::link(*h.sup);
    otp::exit(otp::exit_reason::error("stranger")); // our link tells the supervisor
  });
  CHECK_FALSE(h.sup_exit);
  CHECK(h.n.info(*h.sup));
}

TEST_CASE("point 5: shutdown sends `shutdown`, waits, then kills; brutal_kill kills at once") {
  captured_reports reports;
  harness h;
  h.start({}, {{.id = "patient", .start = otp::worker<slow_to_stop>(&h.log, 50ms), .shutdown = 100ms},
               {.id = "slow", .start = otp::worker<slow_to_stop>(&h.log, 500ms), .shutdown = 100ms},
               {.id = "brutal", .start = otp::worker<slow_to_stop>(&h.log, 500ms),
                .shutdown = otp::shutdown_policy::brutal_kill()}});
  REQUIRE(h.sup);
  h.stop();
  // brutal: killed without terminate; slow: terminate starts, then the kill after 100 ms.
  CHECK(h.log == std::vector<std::string>{"terminate shutdown"});
  h.n.advance(100ms);
  h.n.run_until_idle();
  CHECK(h.log == std::vector<std::string>{"terminate shutdown", "terminate shutdown"});
  h.n.advance(50ms);
  h.n.run_until_idle();
  CHECK(h.log == std::vector<std::string>{"terminate shutdown", "terminate shutdown", "terminated"});
  REQUIRE(h.sup_exit);
  CHECK(reports.count("shutdown_error") == 1); // `slow` had to be killed
  CHECK(reports.field("shutdown_error", 0, "offender.id") == "slow");
  CHECK(reports.field("shutdown_error", 0, "reason") == "killed");
  CHECK(reports.field("shutdown_error", 0, "offender.shutdown") == "100");
}

TEST_CASE("point 5: a shutdown timeout too long for the clock waits as infinity does") {
  captured_reports reports;
  harness h;
  h.start({}, {{.id = "slow", .start = otp::worker<slow_to_stop>(&h.log, 500ms),
                .shutdown = std::chrono::milliseconds::max()}});
  REQUIRE(h.sup);
  h.stop();
  CHECK(h.log == std::vector<std::string>{"terminate shutdown"});
  h.n.advance(400ms);
  CHECK(h.log == std::vector<std::string>{"terminate shutdown"}); // not killed
  h.n.advance(100ms);
  CHECK(h.log == std::vector<std::string>{"terminate shutdown", "terminated"});
  CHECK(reports.count("shutdown_error") == 0);
}

TEST_CASE("children are managed at run time: start, terminate, restart, delete, count") {
  harness h;
  h.start({}, {recorded_child(&h.log, "a")});
  bool done = false;
  h.in_process([&]() -> otp::task<void> {
    auto b = co_await sup::start_child(*h.sup, recorded_child(&h.log, "b"));
    REQUIRE(b);
    auto dup = co_await sup::start_child(*h.sup, recorded_child(&h.log, "b"));
    CHECK(dup.error() == otp::errc::already_started);
    // g++ 12: specs are bound to locals, not built inside co_await (docs/design.md).
    const otp::child_spec no_id{.id = "", .start = otp::worker<ignores_start>()};
    auto bad = co_await sup::start_child(*h.sup, no_id);
    CHECK(bad.error() == otp::errc::invalid_child_spec);
    auto running = co_await sup::delete_child(*h.sup, "b");
    CHECK(running.error() == otp::errc::running);
    CHECK((co_await sup::terminate_child(*h.sup, "b")).has_value());
    CHECK((co_await sup::count_children(*h.sup)).value().active == 1);
    auto again = co_await sup::restart_child(*h.sup, "b");
    REQUIRE(again);
    CHECK(again.value() != b.value());
    CHECK((co_await sup::terminate_child(*h.sup, "b")).has_value());
    CHECK((co_await sup::delete_child(*h.sup, "b")).has_value());
    CHECK((co_await sup::delete_child(*h.sup, "b")).error() == otp::errc::not_found);
    CHECK((co_await sup::restart_child(*h.sup, "zz")).error() == otp::errc::not_found);
    const otp::child_spec db{.id = "db", .start = otp::worker<fails_to_start>()};
    auto failed = co_await sup::start_child(*h.sup, db);
    CHECK(failed.error() == otp::errc::exited);
    CHECK((co_await sup::count_children(*h.sup)).value().specs == 1);
    done = true;
  });
  CHECK(done);
}

TEST_CASE("bad specs and flags are refused before anything starts") {
  harness h;
  h.start({.intensity = -1}, {recorded_child(&h.log, "a")});
  REQUIRE(h.start_error);
  CHECK(*h.start_error == otp::errc::invalid_child_spec);
  CHECK(h.start_error->context.find("negative intensity") != std::string::npos);
  harness d;
  d.start({}, {recorded_child(&d.log, "a"), recorded_child(&d.log, "a")});
  REQUIRE(d.start_error);
  CHECK(d.start_error->context == "child 'a': duplicate id");
  CHECK(d.log.empty());
  harness s;
  s.start({}, {{.id = "sig", .start = otp::worker<ignores_start>(), .significant = true}});
  REQUIRE(s.start_error);
  CHECK(s.start_error->context.find("significant") != std::string::npos);
}

TEST_CASE("a supervisor that gives up escalates to its own supervisor") {
  harness h;
  otp::supervisor_flags inner_flags{.intensity = 0};
  std::vector<otp::child_spec> inner{recorded_child(&h.log, "leaf")};
  h.start({.intensity = 5}, {recorded_child(&h.log, "first"),
                             {.id = "inner", .start = sup::starter(inner_flags, inner, "inner"),
                              .type = otp::child_type::supervisor}});
  REQUIRE(h.sup);
  h.log.clear();
  h.crash("leaf"); // inner gives up at once: exits shutdown; outer restarts it
  CHECK(h.log == std::vector<std::string>{"stop leaf", "start leaf"});
  CHECK_FALSE(h.sup_exit);
}

namespace {

// Sent to a supervisor to let a gated start go on.
struct release {};

// Starts a `recorded` child registered as `name`; attempts fail_first..fail_last
// fail. Attempt `block_at` first waits, inside the supervisor, for a `release`,
// so that a test can queue requests behind it.
otp::task<otp::result<otp::pid>> gated_start(int* attempts, int fail_first, int fail_last, int block_at,
                                             std::string name, std::vector<std::string>* log) {
  const int n = ++*attempts;
  if (n == block_at)
    (void)co_await otp::receive<release>();
  if (n >= fail_first && n <= fail_last)
    co_return otp::error{otp::errc::invalid_argument, name + " start " + std::to_string(n)};
  const otp::gen_server::start_options opts{.name = name, .link = true};
  auto r = co_await otp::gen_server::start_opt<recorded>(opts, log, name);
  if (!r)
    co_return std::move(r).error();
  co_return r.value().pid();
}

otp::task<otp::result<otp::pid>> flaky_start(int* attempts, int fail_first, int fail_last,
                                             std::vector<std::string>* log) {
  return gated_start(attempts, fail_first, fail_last, 0, "flaky", log);
}

} // namespace

TEST_CASE("point 1: a failed restart is retried, and every retry counts toward the intensity") {
  captured_reports reports;
  int attempts = 0;
  harness h;
  h.start({.intensity = 5}, {{.id = "flaky", .start = [&attempts, log = &h.log] {
                                return flaky_start(&attempts, 2, 3, log);
                              }}});
  REQUIRE(h.sup);
  const otp::pid first = h.whereis("flaky");
  h.crash("flaky");
  CHECK(attempts == 4); // two failed restarts, retried until the third worked
  CHECK(reports.count("start_error") == 2);
  // OTP names the old pid, then {restarting, OldPid} on the retries.
  CHECK(reports.field("child_terminated", 0, "offender.pid") == first.to_string());
  CHECK(reports.field("start_error", 0, "offender.pid") == first.to_string());
  CHECK(reports.field("start_error", 1, "offender.pid") == "{restarting," + first.to_string() + "}");
  CHECK(reports.field("start_error", 0, "reason").find("flaky start 2") != std::string::npos);
  CHECK_FALSE(h.sup_exit);
  CHECK(otp::registry::of(h.n).whereis("flaky"));

  captured_reports reports2;
  int attempts2 = 0;
  harness g;
  g.start({.intensity = 2}, {{.id = "flaky", .start = [&attempts2, log = &g.log] {
                                return flaky_start(&attempts2, 2, 100, log);
                              }}});
  const otp::pid first2 = g.whereis("flaky");
  g.crash("flaky");
  CHECK(attempts2 == 3); // restarts 1 and 2 failed; the third is one too many
  REQUIRE(g.sup_exit);
  CHECK(*g.sup_exit == otp::exit_reason::shutdown());
  CHECK(reports2.count("reached_max_restart_intensity") == 1);
  // OTP: errorContext shutdown, reason reached_max_restart_intensity, the child with its last pid.
  CHECK(reports2.field("reached_max_restart_intensity", 0, "errorContext") == "shutdown");
  CHECK(reports2.field("reached_max_restart_intensity", 0, "reason") == "reached_max_restart_intensity");
  CHECK(reports2.field("reached_max_restart_intensity", 0, "offender.pid")
        == "{restarting," + first2.to_string() + "}");
  CHECK(reports2.field("reached_max_restart_intensity", 0, "offender.id") == "flaky");
}

TEST_CASE("auto_shutdown: significant children stop the supervisor when they exit on their own") {
  SUBCASE("any_significant") {
    harness h;
    h.start({.auto_shutdown = otp::auto_shutdown::any_significant},
            {recorded_child(&h.log, "a"),
             {.id = "s", .start = otp::named_worker<recorded>("s", &h.log, std::string("s")),
              .restart = otp::restart_type::transient, .significant = true}});
    h.log.clear();
    h.crash("s", otp::exit_reason::error("boom")); // abnormal: restarted, no shutdown
    CHECK(h.log == std::vector<std::string>{"stop s", "start s"});
    CHECK_FALSE(h.sup_exit);
    h.in_process([&]() -> otp::task<void> { (void)co_await otp::gen_server::stop(h.whereis("s")); });
    REQUIRE(h.sup_exit);
    CHECK(*h.sup_exit == otp::exit_reason::shutdown());
  }
  SUBCASE("all_significant") {
    harness h;
    auto sig = [&](const std::string& id) {
      return otp::child_spec{.id = id, .start = otp::named_worker<recorded>(id, &h.log, id),
                             .restart = otp::restart_type::temporary, .significant = true};
    };
    h.start({.auto_shutdown = otp::auto_shutdown::all_significant}, {sig("s1"), sig("s2")});
    h.crash("s1", otp::exit_reason::shutdown());
    CHECK_FALSE(h.sup_exit);
    h.crash("s2", otp::exit_reason::shutdown());
    REQUIRE(h.sup_exit);
    CHECK(*h.sup_exit == otp::exit_reason::shutdown());
  }
}

TEST_CASE("reports carry OTP's fields as data, and print as OTP's SUPERVISOR REPORT") {
  captured_reports reports;
  harness h;
  h.start({.intensity = 5}, {recorded_child(&h.log, "a")});
  const otp::pid a = h.whereis("a");
  h.crash("a");
  REQUIRE(reports.count("child_terminated") == 1);
  CHECK(reports.field("child_terminated", 0, "supervisor") == h.sup->to_string());
  CHECK(reports.field("child_terminated", 0, "errorContext") == "child_terminated");
  CHECK(reports.field("child_terminated", 0, "reason") == "boom");
  CHECK(reports.field("child_terminated", 0, "offender.pid") == a.to_string());
  CHECK(reports.field("child_terminated", 0, "offender.id") == "a");
  CHECK(reports.field("child_terminated", 0, "offender.restart_type") == "permanent");
  CHECK(reports.field("child_terminated", 0, "offender.shutdown") == "5000");
  CHECK(reports.field("child_terminated", 0, "offender.child_type") == "worker");
  CHECK(reports.field("child_terminated", 0, "offender.significant") == "false");
  CHECK(reports.texts[0]
        == "SUPERVISOR REPORT\n"
           "    supervisor: " + h.sup->to_string() + "\n"
           "    errorContext: child_terminated\n"
           "    reason: boom\n"
           "    offender: [{pid," + a.to_string() + "},\n"
           "               {id,a},\n"
           "               {restart_type,permanent},\n"
           "               {significant,false},\n"
           "               {shutdown,5000},\n"
           "               {child_type,worker}]");
}

TEST_CASE("an ignored start_child or restart_child keeps a permanent child not running, forgets a temporary one") {
  harness h;
  h.start({}, {});
  REQUIRE(h.sup);
  bool done = false;
  h.in_process([&]() -> otp::task<void> {
    const otp::child_spec ign{.id = "ign", .start = otp::worker<ignores_start>()};
    // OTP: {ok, undefined}; here the error `ignored`, with the spec kept.
    auto r = co_await sup::start_child(*h.sup, ign);
    CHECK(r.error() == otp::errc::ignored);
    auto kids = (co_await sup::which_children(*h.sup)).value();
    REQUIRE(kids.size() == 1);
    CHECK(kids[0].id == "ign");
    CHECK_FALSE(kids[0].pid);
    CHECK_FALSE(kids[0].restarting);
    CHECK((co_await sup::restart_child(*h.sup, "ign")).error() == otp::errc::ignored);
    CHECK((co_await sup::count_children(*h.sup)).value().specs == 1);
    const otp::child_spec tmp{.id = "tmp", .start = otp::worker<ignores_start>(),
                              .restart = otp::restart_type::temporary};
    CHECK((co_await sup::start_child(*h.sup, tmp)).error() == otp::errc::ignored);
    CHECK((co_await sup::delete_child(*h.sup, "tmp")).error() == otp::errc::not_found);
    CHECK((co_await sup::delete_child(*h.sup, "ign")).has_value());
    done = true;
  });
  CHECK(done);
  CHECK(h.n.info(*h.sup));
}

TEST_CASE("a child waiting for a restart retry answers restarting, and the retry starts it") {
  captured_reports reports;
  int attempts = 0;
  harness h;
  // Attempt 1 starts; 2 (the restart) fails; 3 (the retry) waits for a release, then fails; 4 works.
  h.start({.intensity = 3}, {{.id = "flaky", .start = [&attempts, log = &h.log] {
                                return gated_start(&attempts, 2, 3, 3, "flaky", log);
                              }}});
  REQUIRE(h.sup);
  h.crash("flaky");
  CHECK(attempts == 3); // the supervisor waits inside attempt 3
  std::optional<otp::result<otp::pid>> restarted;
  std::optional<otp::result<void>> deleted;
  // Both requests queue behind the retry that is in progress.
  h.n.spawn([&]() -> otp::task<void> { restarted = co_await sup::restart_child(*h.sup, "flaky"); });
  h.n.spawn([&]() -> otp::task<void> { deleted = co_await sup::delete_child(*h.sup, "flaky"); });
  h.n.run_until_idle();
  h.in_process([&]() -> otp::task<void> {
    otp::send(*h.sup, release{});
    co_return;
  });
  REQUIRE(restarted);
  REQUIRE(deleted);
  CHECK(restarted->error() == otp::sup_errc::restarting);
  CHECK(deleted->error() == otp::sup_errc::restarting);
  CHECK(attempts == 4); // the retry still came, and started it
  CHECK(otp::registry::of(h.n).whereis("flaky"));
  CHECK(reports.count("start_error") == 2);
  CHECK_FALSE(h.sup_exit);
}

TEST_CASE("a significant child under auto_shutdown never is refused, naming the child") {
  const otp::child_spec sig{.id = "sig", .start = otp::worker<ignores_start>(),
                            .restart = otp::restart_type::transient, .significant = true};
  harness h;
  h.start({}, {sig});
  REQUIRE(h.start_error);
  CHECK(*h.start_error == otp::errc::invalid_child_spec);
  CHECK(h.start_error->context.find("child 'sig'") != std::string::npos);
  CHECK(h.start_error->context.find("auto_shutdown is never") != std::string::npos);

  harness g;
  g.start({}, {});
  std::optional<otp::result<otp::pid>> r;
  g.in_process([&]() -> otp::task<void> { r = co_await sup::start_child(*g.sup, sig); });
  REQUIRE(r);
  CHECK(r->error() == otp::errc::invalid_child_spec);
  CHECK(r->error().context.find("child 'sig'") != std::string::npos);
}

TEST_CASE("point 3: a group restart that fails leaves only the failed child restarting, the later ones undefined") {
  captured_reports reports;
  int attempts = 0;
  harness h;
  // b: attempt 1 starts; 2 (in the group restart) waits for a release, then fails; 3 (the retry) works.
  h.start({.strategy = otp::strategy::rest_for_one, .intensity = 5},
          {recorded_child(&h.log, "a"),
           {.id = "b", .start = [&attempts, log = &h.log] { return gated_start(&attempts, 2, 2, 2, "b", log); }},
           recorded_child(&h.log, "c")});
  REQUIRE(h.sup);
  const otp::pid b = h.whereis("b");
  h.crash("a");
  CHECK(attempts == 2);
  std::vector<otp::child_info> kids;
  h.n.spawn([&]() -> otp::task<void> { kids = (co_await sup::which_children(*h.sup)).value(); });
  h.n.run_until_idle();
  h.in_process([&]() -> otp::task<void> {
    otp::send(*h.sup, release{});
    co_return;
  });
  // Answered between the failure and the retry.
  REQUIRE(kids.size() == 3);
  CHECK(kids[0].pid);
  CHECK_FALSE(kids[1].pid);
  CHECK(kids[1].restarting);
  CHECK_FALSE(kids[2].pid);
  CHECK_FALSE(kids[2].restarting);
  CHECK(attempts == 3);
  CHECK(otp::registry::of(h.n).whereis("c")); // the retry restarted b and c
  // OTP names no pid for a start_error inside a group restart.
  CHECK(reports.field("start_error", 0, "offender.pid") == "undefined");
  CHECK(b != h.whereis("b"));
}

TEST_CASE("point 5: what counts as a clean shutdown, case by case as OTP's shutdown/2") {
  using otp::exit_reason;
  using enum otp::restart_type;
  const auto brutal = otp::shutdown_policy::brutal_kill();
  const otp::shutdown_policy timed(100ms);
  const otp::shutdown_policy forever(otp::infinity);
  // brutal_kill: killed; and a non-permanent child that ended on its own first.
  CHECK(otp::clean_shutdown(brutal, permanent, exit_reason::killed()));
  CHECK_FALSE(otp::clean_shutdown(brutal, permanent, exit_reason::shutdown()));
  CHECK_FALSE(otp::clean_shutdown(brutal, permanent, exit_reason::normal()));
  CHECK(otp::clean_shutdown(brutal, transient, exit_reason::shutdown()));
  CHECK(otp::clean_shutdown(brutal, transient, exit_reason::normal()));
  CHECK(otp::clean_shutdown(brutal, temporary, exit_reason::shutdown("bye")));
  CHECK_FALSE(otp::clean_shutdown(brutal, temporary, exit_reason::error("boom")));
  // A timeout or infinity: shutdown; {shutdown,_} and normal only for non-permanent children.
  for (const auto& how : {timed, forever}) {
    CHECK(otp::clean_shutdown(how, permanent, exit_reason::shutdown()));
    CHECK_FALSE(otp::clean_shutdown(how, permanent, exit_reason::shutdown("bye")));
    CHECK_FALSE(otp::clean_shutdown(how, permanent, exit_reason::normal()));
    CHECK(otp::clean_shutdown(how, transient, exit_reason::shutdown("bye")));
    CHECK(otp::clean_shutdown(how, temporary, exit_reason::normal()));
    CHECK_FALSE(otp::clean_shutdown(how, transient, exit_reason::killed())); // killed after the timeout
  }
}

TEST_SUITE_END();
