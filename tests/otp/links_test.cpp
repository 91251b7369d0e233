// SPDX-License-Identifier: Apache-2.0
// docs/otp_semantics.md point 6: exit signals, links, trap_exit, kill -> killed.
#include "otp/otp.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

namespace {

// Waits forever; the test kills it or lets it be.
otp::task<void> idle() {
  struct never {};
  co_await otp::receive<never>();
}

// Monitors `target` from a fresh process and stores its exit reason.
otp::pid watch(otp::node& n, otp::pid target, std::optional<otp::exit_reason>& out) {
  return n.spawn([&out, target]() -> otp::task<void> {
    (void)otp::monitor(target);
    out = (co_await otp::receive<otp::down_msg>()).reason;
  });
}

} // namespace

TEST_SUITE_BEGIN("otp/links");

TEST_CASE("an exit signal `normal` from another process is dropped unless trapping") {
  otp::node n({.deterministic = true});
  auto target = n.spawn(idle);
  std::optional<otp::exit_reason> down;
  watch(n, target, down);
  n.run_until_idle();
  otp::exit(target, otp::exit_reason::normal());
  n.run_until_idle();
  CHECK_FALSE(down);
  CHECK(n.info(target));
}

TEST_CASE("exit(self(), normal) kills the caller when it does not trap exits") {
  otp::node n({.deterministic = true});
  bool after = false;
  std::optional<otp::exit_reason> down;
  n.spawn([&]() -> otp::task<void> {
    otp::spawn_monitor([&after]() -> otp::task<void> {
      otp::exit(otp::self(), otp::exit_reason::normal());
      co_await otp::yield(); // the signal is handled at this suspension
      after = true;
    });
    down = (co_await otp::receive<otp::down_msg>()).reason;
  });
  n.run_until_idle();
  CHECK_FALSE(after);
  REQUIRE(down);
  CHECK(*down == otp::exit_reason::normal());
}

TEST_CASE("a non-normal exit signal kills a non-trapping process with the same reason") {
  otp::node n({.deterministic = true});
  auto target = n.spawn(idle);
  std::optional<otp::exit_reason> down;
  watch(n, target, down);
  n.run_until_idle();
  otp::exit(target, otp::exit_reason::error("bad_thing"));
  n.run_until_idle();
  REQUIRE(down);
  CHECK(*down == otp::exit_reason::error("bad_thing"));
}

TEST_CASE("a trapping process receives exit signals as exit_msg, normal included") {
  otp::node n({.deterministic = true});
  std::vector<std::string> got;
  auto target = n.spawn([&]() -> otp::task<void> {
    otp::trap_exit(true);
    for (int i = 0; i < 3; ++i) {
      auto m = co_await otp::receive<otp::exit_msg>();
      got.push_back(m.reason.to_string() + (m.from ? " from a process" : " from outside"));
    }
  });
  n.run_until_idle();
  n.spawn([target]() -> otp::task<void> {
    otp::exit(target, otp::exit_reason::normal());
    otp::exit(target, otp::exit_reason::shutdown());
    co_return;
  });
  n.run_until_idle();
  otp::exit(target, otp::exit_reason::error("x"));
  n.run_until_idle();
  CHECK(got == std::vector<std::string>{"normal from a process", "shutdown from a process", "x from outside"});
}

TEST_CASE("exit(pid, kill) cannot be trapped: the target dies `killed`") {
  otp::node n({.deterministic = true});
  bool after = false;
  auto target = n.spawn([&]() -> otp::task<void> {
    otp::trap_exit(true);
    co_await otp::receive<otp::exit_msg>();
    after = true;
  });
  std::optional<otp::exit_reason> down;
  watch(n, target, down);
  n.run_until_idle();
  otp::exit(target, otp::exit_reason::kill());
  n.run_until_idle();
  CHECK_FALSE(after);
  REQUIRE(down);
  CHECK(*down == otp::exit_reason::killed());
}

TEST_CASE("links of a killed process receive `killed`, which is trappable") {
  otp::node n({.deterministic = true});
  std::optional<otp::exit_msg> seen;
  otp::pid victim;
  n.spawn([&]() -> otp::task<void> {
    otp::trap_exit(true);
    victim = otp::spawn_link(idle);
    seen = co_await otp::receive<otp::exit_msg>();
  });
  n.run_until_idle();
  otp::exit(victim, otp::exit_reason::kill());
  n.run_until_idle();
  REQUIRE(seen);
  CHECK(seen->from == victim);
  CHECK(seen->reason == otp::exit_reason::killed());
}

TEST_CASE("`kill` arriving through a link is not converted and can be trapped") {
  otp::node n({.deterministic = true});
  std::optional<otp::exit_msg> trapped;
  std::optional<otp::exit_reason> plain_down;
  otp::pid plain;
  n.spawn([&]() -> otp::task<void> {
    otp::trap_exit(true);
    // The child exits with reason `kill` itself (erlang:exit(kill)).
    auto child = otp::spawn_link([]() -> otp::task<void> {
      co_await otp::yield();
      otp::exit(otp::exit_reason::kill());
    });
    (void)child;
    trapped = co_await otp::receive<otp::exit_msg>();
  });
  // A non-trapping linked process dies with reason `kill`, not `killed`.
  plain = n.spawn([&]() -> otp::task<void> {
    otp::spawn_link([]() -> otp::task<void> {
      co_await otp::yield();
      otp::exit(otp::exit_reason::kill());
    });
    co_await idle();
  });
  watch(n, plain, plain_down);
  n.run_until_idle();
  REQUIRE(trapped);
  CHECK(trapped->reason == otp::exit_reason::kill());
  REQUIRE(plain_down);
  CHECK(*plain_down == otp::exit_reason::kill());
}

TEST_CASE("a crash propagates through links and kills non-trapping partners") {
  otp::node n({.deterministic = true});
  otp::pid a;
  std::optional<otp::exit_reason> down_a;
  a = n.spawn([&]() -> otp::task<void> {
    otp::spawn_link([]() -> otp::task<void> {
      co_await otp::yield();
      throw std::runtime_error("crash");
    });
    co_await idle();
  });
  watch(n, a, down_a);
  n.run_until_idle();
  REQUIRE(down_a);
  CHECK(down_a->exception_type() == "std::runtime_error");
  CHECK(down_a->detail() == "crash");
}

TEST_CASE("a normal exit through a link does not kill a non-trapping partner") {
  otp::node n({.deterministic = true});
  bool survived = false;
  n.spawn([&]() -> otp::task<void> {
    otp::spawn_link([]() -> otp::task<void> { co_return; });
    co_await otp::sleep_for(std::chrono::milliseconds(1));
    survived = true;
  });
  n.run_until_idle();
  n.advance(std::chrono::milliseconds(1));
  CHECK(survived);
}

TEST_CASE("link to a process that does not exist gives the caller `noproc`") {
  otp::node n({.deterministic = true});
  auto dead = n.spawn([]() -> otp::task<void> { co_return; });
  n.run_until_idle();
  std::optional<otp::exit_msg> trapped;
  n.spawn([&]() -> otp::task<void> {
    otp::trap_exit(true);
    otp::link(dead);
    trapped = co_await otp::receive<otp::exit_msg>();
  });
  auto victim = n.spawn([&]() -> otp::task<void> {
    otp::link(dead);
    co_await idle();
  });
  std::optional<otp::exit_reason> down;
  watch(n, victim, down);
  n.run_until_idle();
  REQUIRE(trapped);
  CHECK(trapped->from == dead);
  CHECK(trapped->reason == otp::exit_reason::noproc());
  REQUIRE(down);
  CHECK(*down == otp::exit_reason::noproc());
}

TEST_CASE("link is idempotent, and links to self do nothing") {
  otp::node n({.deterministic = true});
  auto other = n.spawn(idle);
  std::size_t links = 99;
  n.spawn([&]() -> otp::task<void> {
    otp::link(otp::self());
    otp::link(other);
    otp::link(other);
    auto info = co_await otp::get_process_info(otp::self());
    links = info->links.size();
    co_await idle(); // stay alive: our exit would remove the link again
  });
  n.run_until_idle();
  CHECK(links == 1);
  auto io = n.info(other);
  REQUIRE(io);
  CHECK(io->links.size() == 1);
}

TEST_CASE("unlink removes the link both ways; unlinking a stranger does nothing") {
  otp::node n({.deterministic = true});
  bool survived = false;
  otp::pid partner = n.spawn(idle);
  n.spawn([&]() -> otp::task<void> {
    otp::link(partner);
    otp::unlink(partner);
    otp::unlink(partner);      // already gone: no-op
    otp::unlink(otp::pid{});   // never linked: no-op
    co_await otp::sleep_for(std::chrono::milliseconds(5));
    survived = true;
  });
  n.run_until_idle();
  auto pi = n.info(partner);
  REQUIRE(pi);
  CHECK(pi->links.empty());
  otp::exit(partner, otp::exit_reason::error("gone"));
  n.advance(std::chrono::milliseconds(5));
  CHECK(survived);
}

TEST_CASE("trap_exit returns the previous value") {
  otp::node n({.deterministic = true});
  std::vector<bool> got;
  n.spawn([&]() -> otp::task<void> {
    got.push_back(otp::trap_exit(true));
    got.push_back(otp::trap_exit(false));
    got.push_back(otp::trap_exit(false));
    co_return;
  });
  n.run_until_idle();
  CHECK(got == std::vector<bool>{false, true, false});
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("otp/links");

TEST_CASE("a new process does not inherit trap_exit from a recycled control block") {
  otp::node n({.deterministic = true});
  // Many trapping processes come and go, so the blocks they leave are reused.
  for (int i = 0; i < 100; ++i)
    n.spawn([]() -> otp::task<void> {
      otp::trap_exit(true);
      co_return;
    });
  n.run_until_idle();
  std::vector<otp::pid> fresh;
  std::vector<bool> trapping;
  n.spawn([&]() -> otp::task<void> {
    for (int i = 0; i < 100; ++i)
      fresh.push_back(otp::spawn(idle));
    for (auto& p : fresh)
      trapping.push_back((co_await otp::get_process_info(p))->trap_exit);
  });
  n.run_until_idle();
  REQUIRE(trapping.size() == 100);
  CHECK(std::count(trapping.begin(), trapping.end(), true) == 0);
  for (auto& p : fresh)
    otp::exit(p, otp::exit_reason::error("stop"));
  n.run_until_idle();
  CHECK(n.process_count() == 0);
}

TEST_SUITE_END();
