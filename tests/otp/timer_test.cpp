// SPDX-License-Identifier: Apache-2.0
#include "otp/otp.hpp"

#include "tests/support/counted.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <vector>

using namespace std::chrono_literals;
using otp::test::counted;

TEST_SUITE_BEGIN("otp/timer");

TEST_CASE("send_after delivers when the manual clock reaches the deadline") {
  otp::node n({.deterministic = true});
  std::vector<std::string> got;
  n.spawn([&]() -> otp::task<void> {
    otp::send_after(30ms, otp::self(), std::string("late"));
    otp::send_after(10ms, otp::self(), std::string("early"));
    got.push_back(co_await otp::receive<std::string>());
    got.push_back(co_await otp::receive<std::string>());
  });
  n.run_until_idle();
  n.advance(9ms);
  CHECK(got.empty());
  n.advance(1ms);
  CHECK(got == std::vector<std::string>{"early"});
  n.advance(20ms);
  CHECK(got == std::vector<std::string>{"early", "late"});
}

TEST_CASE("cancel_timer stops a pending timer and reports whether it was pending") {
  otp::node n({.deterministic = true});
  std::vector<bool> cancelled;
  bool got = false;
  n.spawn([&]() -> otp::task<void> {
    auto t = otp::send_after(10ms, otp::self(), 1);
    cancelled.push_back(otp::cancel_timer(t));
    cancelled.push_back(otp::cancel_timer(t));
    auto fired = otp::send_after(1ms, otp::self(), 2);
    co_await otp::receive<int>([](const int& v) { return v == 2; });
    cancelled.push_back(otp::cancel_timer(fired));
    got = (co_await otp::receive_for<int>(50ms)).has_value();
  });
  n.run_until_idle();
  n.advance(100ms);
  CHECK(cancelled == std::vector<bool>{true, false, false});
  CHECK_FALSE(got);
}

TEST_CASE("a timer aimed at a process is cancelled when that process exits") {
  counted::reset();
  otp::node n({.deterministic = true});
  auto target = n.spawn([]() -> otp::task<void> { co_await otp::receive<std::string>(); });
  n.spawn([&]() -> otp::task<void> {
    otp::send_after(1h, target, counted{});
    co_return;
  });
  n.run_until_idle();
  CHECK(counted::alive() == 1);
  otp::exit(target, otp::exit_reason::kill());
  n.run_until_idle();
  CHECK(counted::alive() == 0);
}

TEST_CASE("many pending timers fire in deadline order") {
  otp::node n({.deterministic = true});
  std::vector<int> got;
  n.spawn([&]() -> otp::task<void> {
    for (int i = 10000; i > 0; --i)
      otp::send_after(std::chrono::milliseconds(i), otp::self(), i);
    for (int i = 0; i < 10000; ++i)
      got.push_back(co_await otp::receive<int>());
  });
  n.run_until_idle();
  n.advance(10s);
  REQUIRE(got.size() == 10000);
  bool sorted = true;
  for (std::size_t i = 0; i < got.size(); ++i)
    sorted &= got[i] == static_cast<int>(i + 1);
  CHECK(sorted);
}

TEST_CASE("send_after outside a process is a clear error") {
  otp::node n({.deterministic = true});
  CHECK_THROWS_WITH_AS(otp::send_after(1ms, otp::pid{}, 1), doctest::Contains("must be called from a process"),
                       std::system_error);
}

TEST_SUITE_END();
