// SPDX-License-Identifier: Apache-2.0
// A killed process stops at its suspension point and its destructors run.
#include "otp/otp.hpp"

#include "tests/support/counted.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <optional>

using namespace std::chrono_literals;
using otp::test::counted;

namespace {

otp::task<int> nested_wait() {
  counted inner;
  co_return co_await otp::receive<int>();
}

} // namespace

TEST_SUITE_BEGIN("otp/kill");

TEST_CASE("killing a process blocked in receive destroys its frame once") {
  counted::reset();
  otp::node n({.deterministic = true});
  bool resumed = false;
  auto p = n.spawn([&]() -> otp::task<void> {
    counted local;
    try {
      co_await otp::receive<int>();
      resumed = true;
    } catch (...) {
      resumed = true; // nothing inside the process can observe a kill
    }
  });
  n.run_until_idle();
  CHECK(counted::alive() == 1);
  otp::exit(p, otp::exit_reason::kill());
  n.run_until_idle();
  CHECK_FALSE(resumed);
  CHECK(counted::alive() == 0);
  CHECK(counted::destroyed == 1);
  CHECK(n.process_count() == 0);
}

TEST_CASE("killing a process destroys the frames of the tasks it awaits") {
  counted::reset();
  otp::node n({.deterministic = true});
  auto p = n.spawn([]() -> otp::task<void> {
    counted outer;
    (void)co_await nested_wait();
  });
  n.run_until_idle();
  CHECK(counted::alive() == 2);
  otp::exit(p, otp::exit_reason::kill());
  n.run_until_idle();
  CHECK(counted::alive() == 0);
}

TEST_CASE("a process killed while waiting with a timeout leaves no timer behind") {
  counted::reset();
  otp::node n({.deterministic = true});
  auto p = n.spawn([]() -> otp::task<void> {
    counted local;
    (void)co_await otp::receive_for<int>(1h);
  });
  n.run_until_idle();
  otp::exit(p, otp::exit_reason::kill());
  n.run_until_idle();
  CHECK(counted::alive() == 0);
  n.advance(2h); // the cancelled timer must not touch the dead frame (ASan)
  CHECK(n.process_count() == 0);
}

TEST_CASE("messages left in a dead process's mailbox are destroyed") {
  counted::reset();
  otp::node n({.deterministic = true});
  auto p = n.spawn([]() -> otp::task<void> { co_await otp::receive<int>(); });
  n.run_until_idle();
  otp::send(p, counted{});
  otp::send(p, counted{});
  n.run_until_idle();
  CHECK(counted::alive() == 2);
  otp::exit(p, otp::exit_reason::kill());
  n.run_until_idle();
  CHECK(counted::alive() == 0);
}

TEST_CASE("a node shut down with processes blocked destroys every frame and message") {
  counted::reset();
  {
    otp::node n({.deterministic = true});
    for (int i = 0; i < 100; ++i) {
      auto p = n.spawn([]() -> otp::task<void> {
        counted local;
        co_await otp::receive<int>();
      });
      otp::send(p, counted{});
      otp::send(p, std::string("unmatched"));
    }
    n.spawn([]() -> otp::task<void> {
      counted local;
      co_await otp::sleep_for(1h);
    });
    n.run_until_idle();
    CHECK(counted::alive() == 201);
  }
  CHECK(counted::alive() == 0);
}

TEST_SUITE_END();
