// SPDX-License-Identifier: Apache-2.0
// Allocation failures in the runtime's own paths: an operation that runs out
// of memory throws std::bad_alloc and leaves nothing half-made behind.
//
// This executable replaces the global operator new, so that a test can make
// the next allocation on its thread fail. Processes of a deterministic node
// run on the test's thread, so the failure lands inside the runtime.
#include "otp/otp.hpp"

#include "tests/support/counted.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <new>
#include <vector>

namespace {
// Allocations on this thread before one fails; negative: none fails.
thread_local int allocations_before_failure = -1;
} // namespace

void* operator new(std::size_t n) {
  if (allocations_before_failure >= 0 && allocations_before_failure-- == 0)
    throw std::bad_alloc();
  if (void* p = std::malloc(n == 0 ? 1 : n))
    return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }

using otp::test::counted;

namespace {

otp::task<void> idle() {
  struct never {};
  co_await otp::receive<never>();
}

// Holds a counted in its frame: alive() says whether the frame was destroyed.
otp::task<void> holds(counted) { co_return; }

} // namespace

TEST_SUITE_BEGIN("otp/out_of_memory");

TEST_CASE("a spawn_link whose parent cannot record the link fails, and destroys the new frame") {
  // Past two links a process's link map is a hash map, and each new link
  // allocates: the parent's half of the link is what fails here.
  otp::node n({.deterministic = true});
  bool threw = false;
  std::size_t links_after = 0;
  std::size_t processes_before = 0;
  std::size_t processes_after = 0;
  n.spawn([&]() -> otp::task<void> {
    otp::trap_exit(true);
    for (int i = 0; i < 3; ++i)
      (void)otp::spawn_link(idle);
    counted::reset();
    processes_before = n.process_count();
    allocations_before_failure = 0;
    try {
      (void)otp::spawn_link(holds, counted{});
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    allocations_before_failure = -1;
    processes_after = n.process_count();
    links_after = (co_await otp::get_process_info(otp::self()))->links.size();
  });
  n.run_until_idle();
  REQUIRE(threw);
  CHECK(counted::alive() == 0); // the frame and its argument were destroyed
  CHECK(links_after == 3);
  CHECK(processes_after == processes_before);
}

TEST_CASE("a spawn with link and monitor whose monitor cannot be recorded leaves no link behind") {
  // The link fits inline; the parent's fourth monitor allocates and fails.
  // Before, the parent kept a link to a process that never existed.
  otp::node n({.deterministic = true});
  bool threw = false;
  std::vector<otp::pid> links_after;
  std::size_t monitors_after = 0;
  bool retried = false;
  n.spawn([&]() -> otp::task<void> {
    for (int i = 0; i < 3; ++i)
      (void)otp::spawn_monitor(idle);
    counted::reset();
    allocations_before_failure = 0;
    try {
      (void)otp::spawn_opt({.link = true, .monitor = true}, holds, counted{});
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    allocations_before_failure = -1;
    auto info = co_await otp::get_process_info(otp::self());
    links_after = info->links;
    monitors_after = info->monitors.size();
    // The block went back to the free list: the next spawn works.
    const otp::pid again = otp::spawn_opt({.link = true, .monitor = true}, idle).pid;
    retried = (co_await otp::get_process_info(again)).has_value();
  });
  n.run_until_idle();
  REQUIRE(threw);
  CHECK(counted::alive() == 0);
  CHECK(links_after.empty());
  CHECK(monitors_after == 3);
  CHECK(retried);
}

TEST_CASE("a spawn_link that fails at any of its allocations leaves the parent's links as they were") {
  // Each allocation of the spawn in turn fails, until one spawn gets
  // through: with two links before (the third turns the inline map into a
  // hash map, which must not drop the two if it fails midway) and with four.
  for (const int links_before : {2, 4}) {
    CAPTURE(links_before);
    otp::node n({.deterministic = true});
    std::vector<int> failed_at;
    std::vector<std::size_t> links_seen;
    std::vector<int> frames_alive;
    bool succeeded = false;
    n.spawn([&]() -> otp::task<void> {
      otp::trap_exit(true);
      for (int i = 0; i < links_before; ++i)
        (void)otp::spawn_link(idle);
      for (int k = 0; k < 64 && !succeeded; ++k) {
        counted::reset();
        allocations_before_failure = k;
        try {
          (void)otp::spawn_link(holds, counted{});
          succeeded = true;
        } catch (const std::bad_alloc&) {
          failed_at.push_back(k);
        }
        allocations_before_failure = -1;
        links_seen.push_back((co_await otp::get_process_info(otp::self()))->links.size());
        frames_alive.push_back(counted::alive());
      }
    });
    n.run_until_idle();
    REQUIRE(succeeded);
    REQUIRE(!failed_at.empty()); // some allocation was made, and failed
    for (std::size_t i = 0; i < failed_at.size(); ++i) {
      CAPTURE(failed_at[i]);
      CHECK(links_seen[i] == static_cast<std::size_t>(links_before));
      CHECK(frames_alive[i] == 0);
    }
    CHECK(links_seen.back() == static_cast<std::size_t>(links_before) + 1);
  }
}

TEST_SUITE_END();
