// SPDX-License-Identifier: Apache-2.0
// Dynamic supervisors (simple_one_for_one): children from one template,
// extra arguments, max_children, and the parallel shutdown of point 2.
#include "supervisor/dynamic_supervisor.hpp"

#include "otp/logger.hpp"
#include "otp/otp.hpp"
#include "tests/support/counted.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

using namespace std::chrono_literals;
namespace dsup = otp::dynamic_supervisor;

namespace {

struct session {
  std::vector<std::string>* log;
  std::string user;
  otp::test::counted alive;
  session(std::vector<std::string>* l, std::string u) : log(l), user(std::move(u)) { log->push_back("start " + user); }
  session(const session&) = delete;
  session& operator=(const session&) = delete;
  ~session() { log->push_back("stop " + user); }
  std::string handle_call(otp::context&, int) { return user; }
};

// Traps exits and needs `ms` of (virtual) time to terminate.
struct slow_session {
  std::vector<std::string>* log;
  std::string user;
  std::chrono::milliseconds ms;
  void init(otp::context&) { otp::trap_exit(true); }
  otp::task<void> terminate(otp::context&, const otp::exit_reason&) {
    co_await otp::sleep_for(ms);
    log->push_back("terminated " + user);
  }
};

// Captures the reports of one test; restores the default handler after.
struct captured_reports {
  std::vector<otp::log_event> events;
  captured_reports() {
    otp::set_log_handler([this](const otp::log_event& e) {
      events.push_back(e);
      events.back().domain = {}; // the views do not outlive the call
      events.back().kind = {};
      kinds.emplace_back(e.kind);
    });
  }
  ~captured_reports() { otp::set_log_handler({}); }
  std::vector<std::string> kinds;
  // Returns field `key` of the `n`th report of `kind` (0-based), or "" if absent.
  [[nodiscard]] std::string field(std::string_view kind, std::size_t n, std::string_view key) const {
    for (std::size_t i = 0; i < kinds.size(); ++i) {
      if (kinds[i] != kind || n-- != 0)
        continue;
      const std::string* v = events[i].field(key);
      return v != nullptr ? *v : std::string();
    }
    return "";
  }
  [[nodiscard]] std::size_t count(std::string_view kind) const {
    return static_cast<std::size_t>(std::count(kinds.begin(), kinds.end(), kind));
  }
};

struct dyn_harness {
  std::vector<std::string> log;
  otp::node n{{.deterministic = true}};
  otp::pid parent;
  std::optional<otp::dynamic_supervisor_ref<std::string>> sup;
  std::optional<otp::error> start_error;
  std::optional<otp::exit_reason> sup_exit;

  void start(otp::dynamic_supervisor_flags flags, otp::dynamic_child_spec<std::string> spec) {
    parent = n.spawn([this, flags, spec]() -> otp::task<void> {
      otp::trap_exit(true);
      auto r = co_await dsup::start_link(flags, spec);
      if (!r) {
        start_error = r.error();
        co_return;
      }
      sup = r.value();
      for (;;) {
        auto m = co_await otp::receive([](otp::exit_msg e) { return std::optional<otp::exit_msg>(e); },
                                       [](std::string) { return std::optional<otp::exit_msg>(); });
        if (!m)
          otp::exit(sup->pid(), otp::exit_reason::shutdown());
        else if (m->from == sup->pid()) {
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
  template <class F>
  void in_process(F body) {
    n.spawn(std::move(body));
    n.run_until_idle();
  }
  std::vector<otp::pid> start_children(const std::vector<std::string>& users) {
    std::vector<otp::pid> out;
    in_process([&]() -> otp::task<void> {
      for (const auto& u : users) {
        auto r = co_await dsup::start_child(*sup, u);
        REQUIRE(r);
        out.push_back(r.value());
      }
    });
    return out;
  }
};

} // namespace

TEST_SUITE_BEGIN("supervisor/dynamic");

TEST_CASE("children start from the template with their extra arguments and restart with them") {
  otp::test::counted::reset();
  dyn_harness h;
  h.start({.intensity = 10}, {.id = "session", .start = otp::dynamic_worker<session, std::string>(&h.log)});
  auto kids = h.start_children({"ada", "bob"});
  CHECK(h.log == std::vector<std::string>{"start ada", "start bob"});
  h.log.clear();
  h.n.exit(kids[1], otp::exit_reason::error("boom"));
  h.n.run_until_idle();
  CHECK(h.log == std::vector<std::string>{"stop bob", "start bob"});
  std::optional<otp::child_counts> counts;
  h.in_process([&]() -> otp::task<void> { counts = (co_await dsup::count_children(*h.sup)).value(); });
  CHECK(counts->active == 2);
  CHECK(counts->workers == 2);
  h.stop();
  CHECK(h.sup_exit == otp::exit_reason::shutdown());
  CHECK(otp::test::counted::alive() == 0);
}

TEST_CASE("temporary children are not restarted; max_children limits start_child") {
  dyn_harness h;
  h.start({.max_children = 2}, {.id = "session",
                                .start = otp::dynamic_worker<session, std::string>(&h.log),
                                .restart = otp::restart_type::temporary});
  auto kids = h.start_children({"ada", "bob"});
  std::optional<otp::error> full;
  h.in_process([&]() -> otp::task<void> { full = (co_await dsup::start_child(*h.sup, std::string("cy"))).error(); });
  REQUIRE(full);
  CHECK(*full == otp::errc::invalid_argument);
  CHECK(full->context.find("max_children") != std::string::npos);
  h.log.clear();
  h.n.exit(kids[0], otp::exit_reason::error("boom"));
  h.n.run_until_idle();
  CHECK(h.log == std::vector<std::string>{"stop ada"});
  std::vector<otp::child_info> left;
  h.in_process([&]() -> otp::task<void> { left = (co_await dsup::which_children(*h.sup)).value(); });
  REQUIRE(left.size() == 1);
  CHECK(left[0].pid == kids[1]);
}

TEST_CASE("point 2: dynamic children stop all at once, with one shared kill timer") {
  otp::set_log_level(otp::log_level::none);
  dyn_harness h;
  h.start({}, {.id = "slow",
               .start = [log = &h.log](std::string u) -> otp::task<otp::result<otp::pid>> {
                 const auto ms = u == "late" ? 500ms : 50ms;
                 return otp::detail::start_gen_server_child<slow_session>(
                   otp::gen_server::start_options{.link = true}, std::make_tuple(log, u, std::chrono::milliseconds(ms)));
               },
               .shutdown = 100ms});
  (void)h.start_children({"a", "b", "late"});
  h.stop();
  CHECK(h.log.empty());
  h.n.advance(50ms); // a and b terminate together: not one after the other
  h.n.run_until_idle();
  std::sort(h.log.begin(), h.log.end());
  CHECK(h.log == std::vector<std::string>{"terminated a", "terminated b"});
  CHECK_FALSE(h.sup_exit);
  h.n.advance(50ms); // the shared 100 ms timer kills `late`
  h.n.run_until_idle();
  REQUIRE(h.sup_exit);
  CHECK(*h.sup_exit == otp::exit_reason::shutdown());
  CHECK(h.n.process_count() == 0);
  otp::set_log_level(otp::log_level::notice);
}

TEST_CASE("too many restarts stop a dynamic supervisor; terminate_child stops one child") {
  dyn_harness h;
  h.start({.intensity = 1, .period = 5s}, {.id = "session", .start = otp::dynamic_worker<session, std::string>(&h.log)});
  auto kids = h.start_children({"ada", "bob"});
  std::optional<otp::result<void>> stopped, missing;
  h.in_process([&]() -> otp::task<void> {
    stopped = co_await dsup::terminate_child(*h.sup, kids[0]);
    missing = co_await dsup::terminate_child(*h.sup, kids[0]);
  });
  CHECK(stopped->has_value());
  CHECK(missing->has_value()); // OTP: ok for any pid no longer alive
  otp::set_log_level(otp::log_level::none);
  h.n.exit(kids[1], otp::exit_reason::error("boom"));
  h.n.run_until_idle();
  CHECK_FALSE(h.sup_exit);
  std::vector<otp::child_info> now;
  h.in_process([&]() -> otp::task<void> { now = (co_await dsup::which_children(*h.sup)).value(); });
  REQUIRE(now.size() == 1);
  h.n.exit(*now[0].pid, otp::exit_reason::error("boom"));
  h.n.run_until_idle();
  otp::set_log_level(otp::log_level::notice);
  REQUIRE(h.sup_exit);
  CHECK(*h.sup_exit == otp::exit_reason::shutdown());
}

TEST_CASE("terminate_child answers ok for any pid no longer alive, not_found for a live stranger") {
  dyn_harness h;
  h.start({}, {.id = "session", .start = otp::dynamic_worker<session, std::string>(&h.log),
               .restart = otp::restart_type::temporary});
  auto kids = h.start_children({"ada"});
  h.n.exit(kids[0], otp::exit_reason::error("boom")); // gone before terminate_child
  h.n.run_until_idle();
  std::optional<otp::result<void>> dead, stranger;
  h.in_process([&]() -> otp::task<void> {
    dead = co_await dsup::terminate_child(*h.sup, kids[0]);
    stranger = co_await dsup::terminate_child(*h.sup, h.parent);
  });
  REQUIRE(dead);
  CHECK(dead->has_value());
  REQUIRE(stranger);
  CHECK(stranger->error() == otp::errc::not_found);
}

TEST_CASE("the query functions may be given a temporary ref and awaited later") {
  // The tasks start when awaited: a ref taken by reference would dangle.
  dyn_harness h;
  h.start({}, {.id = "session", .start = otp::dynamic_worker<session, std::string>(&h.log)});
  auto kids = h.start_children({"ada", "bob"});
  std::optional<std::size_t> listed, active;
  std::optional<bool> terminated;
  h.in_process([&]() -> otp::task<void> {
    const otp::pid p = h.sup->pid();
    auto which = dsup::which_children(otp::dynamic_supervisor_ref<std::string>(p));
    auto counts = dsup::count_children(otp::dynamic_supervisor_ref<std::string>(p));
    auto stop_one = dsup::terminate_child(otp::dynamic_supervisor_ref<std::string>(p), kids[0]);
    auto w = co_await which;
    auto c = co_await counts;
    auto t = co_await stop_one;
    if (w)
      listed = w.value().size();
    if (c)
      active = c.value().active;
    terminated = t.has_value();
  });
  CHECK(listed == 2u);
  CHECK(active == 2u);
  CHECK(terminated == true);
}

TEST_CASE("the supervisor API on a dynamic supervisor answers as OTP's simple_one_for_one") {
  dyn_harness h;
  h.start({}, {.id = "session", .start = otp::dynamic_worker<session, std::string>(&h.log)});
  auto kids = h.start_children({"ada"});
  bool done = false;
  h.in_process([&]() -> otp::task<void> {
    const otp::pid s = h.sup->pid();
    CHECK((co_await otp::supervisor::restart_child(s, "session")).error() == otp::sup_errc::simple_one_for_one);
    CHECK((co_await otp::supervisor::delete_child(s, "session")).error() == otp::sup_errc::simple_one_for_one);
    CHECK((co_await otp::supervisor::terminate_child(s, "session")).error() == otp::sup_errc::simple_one_for_one);
    const otp::child_spec spec{.id = "x", .start = otp::worker<session>(&h.log, std::string("x"))};
    auto started = co_await otp::supervisor::start_child(s, spec);
    CHECK(started.error() == otp::sup_errc::simple_one_for_one);
    CHECK(started.error().context.find("dynamic_supervisor::start_child") != std::string::npos);
    auto which = co_await otp::supervisor::which_children(s);
    REQUIRE(which);
    REQUIRE(which.value().size() == 1);
    CHECK(which.value()[0].pid == kids[0]);
    CHECK((co_await otp::supervisor::count_children(s)).value().active == 1);
    done = true;
  });
  CHECK(done);
  CHECK(h.log == std::vector<std::string>{"start ada"}); // nothing changed
}

TEST_CASE("significant dynamic children: auto_shutdown any_significant and all_significant") {
  const auto tpl = [](std::vector<std::string>* log, otp::restart_type r) {
    return otp::dynamic_child_spec<std::string>{.id = "session",
                                                .start = otp::dynamic_worker<session, std::string>(log),
                                                .restart = r,
                                                .significant = true};
  };
  SUBCASE("any_significant: the first to end on its own stops the supervisor") {
    dyn_harness h;
    h.start({.intensity = 5, .auto_shutdown = otp::auto_shutdown::any_significant},
            tpl(&h.log, otp::restart_type::transient));
    auto kids = h.start_children({"ada", "bob", "cy"});
    h.n.exit(kids[0], otp::exit_reason::error("boom")); // abnormal: restarted
    h.n.run_until_idle();
    CHECK_FALSE(h.sup_exit);
    h.in_process([&]() -> otp::task<void> { CHECK((co_await dsup::terminate_child(*h.sup, kids[1])).has_value()); });
    CHECK_FALSE(h.sup_exit); // terminate_child is not an exit of its own
    h.n.exit(kids[2], otp::exit_reason::shutdown());
    h.n.run_until_idle();
    REQUIRE(h.sup_exit);
    CHECK(*h.sup_exit == otp::exit_reason::shutdown());
    CHECK(h.n.process_count() == 0);
  }
  SUBCASE("all_significant: when the last one is gone") {
    dyn_harness h;
    h.start({.auto_shutdown = otp::auto_shutdown::all_significant}, tpl(&h.log, otp::restart_type::temporary));
    auto kids = h.start_children({"ada", "bob"});
    h.n.exit(kids[0], otp::exit_reason::error("boom"));
    h.n.run_until_idle();
    CHECK_FALSE(h.sup_exit);
    h.n.exit(kids[1], otp::exit_reason::shutdown());
    h.n.run_until_idle();
    REQUIRE(h.sup_exit);
    CHECK(*h.sup_exit == otp::exit_reason::shutdown());
  }
  SUBCASE("refused under auto_shutdown never, and for a permanent template") {
    dyn_harness h;
    h.start({}, tpl(&h.log, otp::restart_type::transient));
    REQUIRE(h.start_error);
    CHECK(*h.start_error == otp::errc::invalid_child_spec);
    CHECK(h.start_error->context.find("child 'session'") != std::string::npos);
    CHECK(h.start_error->context.find("never") != std::string::npos);
    dyn_harness p;
    p.start({.auto_shutdown = otp::auto_shutdown::any_significant}, tpl(&p.log, otp::restart_type::permanent));
    REQUIRE(p.start_error);
    CHECK(p.start_error->context.find("cannot be permanent") != std::string::npos);
  }
}

TEST_CASE("dynamic supervisor reports name the child's pid, as OTP's") {
  captured_reports reports;
  dyn_harness h;
  int attempts = 0;
  h.start({.intensity = 2},
          {.id = "session",
           .start = [log = &h.log, &attempts](std::string u) -> otp::task<otp::result<otp::pid>> {
             if (++attempts > 1)
               return [](int n) -> otp::task<otp::result<otp::pid>> {
                 co_return otp::error{otp::errc::invalid_argument, "start " + std::to_string(n)};
               }(attempts);
             return otp::detail::start_gen_server_child<session>(otp::gen_server::start_options{.link = true},
                                                                 std::make_tuple(log, u));
           }});
  auto kids = h.start_children({"ada"});
  h.n.exit(kids[0], otp::exit_reason::error("boom"));
  h.n.run_until_idle();
  REQUIRE(h.sup_exit);
  const std::string old = kids[0].to_string();
  CHECK(reports.field("child_terminated", 0, "offender.pid") == old);
  CHECK(reports.field("child_terminated", 0, "reason") == "boom");
  CHECK(reports.field("start_error", 0, "offender.pid") == old);
  CHECK(reports.field("start_error", 1, "offender.pid") == "{restarting," + old + "}");
  CHECK(reports.field("reached_max_restart_intensity", 0, "offender.pid") == "{restarting," + old + "}");
  CHECK(reports.field("reached_max_restart_intensity", 0, "errorContext") == "shutdown");
  CHECK(reports.field("reached_max_restart_intensity", 0, "offender.id") == "session");
}

TEST_SUITE_END();
