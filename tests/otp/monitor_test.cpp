// SPDX-License-Identifier: Apache-2.0
// docs/otp_semantics.md point 7: monitors and their 'DOWN' messages.
#include "otp/otp.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <vector>

using namespace std::chrono_literals;

namespace {

otp::task<void> wait_for_string() { co_await otp::receive<std::string>(); }

} // namespace

TEST_SUITE_BEGIN("otp/monitor");

TEST_CASE("a down_msg carries the monitor ref, the pid and the exit reason") {
  otp::node n({.deterministic = true});
  auto target = n.spawn(wait_for_string);
  std::optional<otp::down_msg> got;
  otp::monitor_ref ref;
  n.spawn([&]() -> otp::task<void> {
    ref = otp::monitor(target);
    got = co_await otp::receive<otp::down_msg>();
  });
  n.run_until_idle();
  otp::exit(target, otp::exit_reason::shutdown("maintenance"));
  n.run_until_idle();
  REQUIRE(got);
  CHECK(got->ref == ref);
  CHECK(got->from == target);
  CHECK(got->reason == otp::exit_reason::shutdown("maintenance"));
}

TEST_CASE("monitoring a dead process gives `noproc` at once") {
  otp::node n({.deterministic = true});
  auto dead = n.spawn([]() -> otp::task<void> { co_return; });
  n.run_until_idle();
  std::optional<otp::down_msg> got;
  n.spawn([&]() -> otp::task<void> {
    auto ref = otp::monitor(dead);
    got = co_await otp::receive<otp::down_msg>();
    CHECK(got->ref == ref);
  });
  n.run_until_idle();
  REQUIRE(got);
  CHECK(got->from == dead);
  CHECK(got->reason == otp::exit_reason::noproc());
}

TEST_CASE("monitoring a pid that never existed gives `noproc`") {
  otp::node n({.deterministic = true});
  std::optional<otp::down_msg> got;
  n.spawn([&]() -> otp::task<void> {
    (void)otp::monitor(otp::pid{});
    got = co_await otp::receive<otp::down_msg>();
  });
  n.run_until_idle();
  REQUIRE(got);
  CHECK(got->reason == otp::exit_reason::noproc());
}

TEST_CASE("monitors stack: each one gives its own down_msg") {
  otp::node n({.deterministic = true});
  auto target = n.spawn(wait_for_string);
  std::vector<otp::monitor_ref> refs, downs;
  n.spawn([&]() -> otp::task<void> {
    refs.push_back(otp::monitor(target));
    refs.push_back(otp::monitor(target));
    downs.push_back((co_await otp::receive<otp::down_msg>()).ref);
    downs.push_back((co_await otp::receive<otp::down_msg>()).ref);
  });
  n.run_until_idle();
  CHECK(refs[0] != refs[1]);
  otp::send(target, std::string("stop"));
  n.run_until_idle();
  // One DOWN per monitor; their relative order is unspecified (as in Erlang).
  std::sort(downs.begin(), downs.end());
  std::sort(refs.begin(), refs.end());
  CHECK(downs == refs);
}

TEST_CASE("demonitor stops a future down_msg and says whether the monitor was active") {
  otp::node n({.deterministic = true});
  auto target = n.spawn(wait_for_string);
  std::vector<bool> results;
  bool got_down = true;
  n.spawn([&]() -> otp::task<void> {
    auto ref = otp::monitor(target);
    results.push_back(otp::demonitor(ref));
    results.push_back(otp::demonitor(ref));
    otp::send(target, std::string("stop"));
    auto d = co_await otp::receive_for<otp::down_msg>(10ms);
    got_down = d.has_value();
  });
  n.run_until_idle();
  n.advance(10ms);
  CHECK(results == std::vector<bool>{true, false});
  CHECK_FALSE(got_down);
  auto info = n.info(target);
  CHECK_FALSE(info);
}

TEST_CASE("demonitor with flush removes a down_msg that is already queued") {
  otp::node n({.deterministic = true});
  std::size_t before = 0, after = 0;
  std::vector<int> rest;
  n.spawn([&]() -> otp::task<void> {
    auto target = otp::spawn([]() -> otp::task<void> { co_return; });
    auto ref = otp::monitor(target);
    otp::send(otp::self(), 1);
    co_await otp::sleep_for(1ms); // target exits; its DOWN lands in the mailbox
    otp::send(otp::self(), 2);
    before = (co_await otp::get_process_info(otp::self()))->message_queue_len;
    otp::demonitor(ref, true);
    after = (co_await otp::get_process_info(otp::self()))->message_queue_len;
    rest.push_back(co_await otp::receive<int>());
    rest.push_back(co_await otp::receive<int>());
  });
  n.run_until_idle();
  n.advance(1ms);
  CHECK(before == 3);
  CHECK(after == 2);
  CHECK(rest == std::vector<int>{1, 2});
}

TEST_CASE("the monitored process sees who monitors it until the monitor goes") {
  otp::node n({.deterministic = true});
  auto target = n.spawn(wait_for_string);
  otp::monitor_ref ref;
  auto watcher = n.spawn([&]() -> otp::task<void> {
    ref = otp::monitor(target);
    co_await otp::receive<int>();
    otp::demonitor(ref);
    co_await otp::receive<int>();
  });
  n.run_until_idle();
  CHECK(n.info(target)->monitored_by == std::vector<otp::pid>{watcher});
  otp::send(watcher, 1);
  n.run_until_idle();
  CHECK(n.info(target)->monitored_by.empty());
}

TEST_CASE("spawn_monitor monitors atomically, even a child that dies at once") {
  otp::node n({.deterministic = true});
  std::optional<otp::down_msg> got;
  otp::monitor_ref ref;
  otp::pid child;
  n.spawn([&]() -> otp::task<void> {
    std::tie(child, ref) = otp::spawn_monitor([]() -> otp::task<void> { co_return; });
    got = co_await otp::receive<otp::down_msg>();
  });
  n.run_until_idle();
  REQUIRE(got);
  CHECK(got->ref == ref);
  CHECK(got->from == child);
  CHECK(got->reason == otp::exit_reason::normal());
}

TEST_CASE("a process's monitors are removed from their targets when it exits") {
  otp::node n({.deterministic = true});
  auto target = n.spawn(wait_for_string);
  auto watcher = n.spawn([&]() -> otp::task<void> {
    (void)otp::monitor(target);
    co_await otp::receive<int>();
  });
  n.run_until_idle();
  CHECK(n.info(target)->monitored_by.size() == 1);
  otp::send(watcher, 1);
  n.run_until_idle();
  CHECK(n.info(target)->monitored_by.empty());
}

TEST_SUITE_END();
