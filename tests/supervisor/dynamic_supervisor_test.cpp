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

struct dyn_harness {
  std::vector<std::string> log;
  otp::node n{{.deterministic = true}};
  otp::pid parent;
  std::optional<otp::dynamic_supervisor_ref<std::string>> sup;
  std::optional<otp::exit_reason> sup_exit;

  void start(otp::dynamic_supervisor_flags flags, otp::dynamic_child_spec<std::string> spec) {
    parent = n.spawn([this, flags, spec]() -> otp::task<void> {
      otp::trap_exit(true);
      auto r = co_await dsup::start_link(flags, spec);
      REQUIRE(r);
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
  CHECK(missing->error() == otp::errc::not_found);
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

TEST_SUITE_END();
