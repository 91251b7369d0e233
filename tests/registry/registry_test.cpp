// SPDX-License-Identifier: Apache-2.0
// docs/otp_semantics.md point 9's first half and the registry's promises: local names.
#include "registry/registry.hpp"

#include "otp/otp.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace {

otp::task<void> wait_for_string() { co_await otp::receive<std::string>(); }

} // namespace

TEST_SUITE_BEGIN("registry/names");

TEST_CASE("a registered process is found by name and reached by a send to the name") {
  otp::node n({.deterministic = true});
  std::string got;
  auto p = n.spawn([&]() -> otp::task<void> { got = co_await otp::receive<std::string>(); });
  auto& reg = otp::registry::of(n);
  REQUIRE(reg.register_name("db", p));
  CHECK(reg.whereis("db") == p);
  CHECK(reg.registered() == std::vector<std::string>{"db"});
  n.spawn([]() -> otp::task<void> {
    auto r = otp::send("db", std::string("hello"));
    CHECK(r.has_value());
    co_return;
  });
  n.run_until_idle();
  CHECK(got == "hello");
}

TEST_CASE("bad registrations are refused with a clear error and change nothing") {
  otp::node n({.deterministic = true});
  auto& reg = otp::registry::of(n);
  auto a = n.spawn(wait_for_string);
  auto b = n.spawn(wait_for_string);
  REQUIRE(reg.register_name("a", a));

  auto empty = reg.register_name("", b);
  REQUIRE(empty.has_error());
  CHECK(empty.error() == otp::errc::invalid_argument);
  CHECK(empty.error().context.find("empty") != std::string::npos);

  auto taken = reg.register_name("a", b);
  REQUIRE(taken.has_error());
  CHECK(taken.error() == otp::errc::already_started);
  CHECK(taken.error().context.find(a.to_string()) != std::string::npos);

  auto second_name = reg.register_name("other", a);
  REQUIRE(second_name.has_error());
  CHECK(second_name.error() == otp::errc::invalid_argument);
  CHECK(second_name.error().context.find("already registered as 'a'") != std::string::npos);

  auto dead = n.spawn([]() -> otp::task<void> { co_return; });
  n.run_until_idle();
  auto gone = reg.register_name("ghost", dead);
  REQUIRE(gone.has_error());
  CHECK(gone.error() == otp::errc::noproc);
  CHECK(reg.register_name("nobody", otp::pid{}).error() == otp::errc::noproc);

  auto names = reg.registered();
  CHECK(names == std::vector<std::string>{"a"});
  CHECK(reg.whereis("a") == a);
  CHECK_FALSE(reg.whereis("ghost"));
}

TEST_CASE("unregister frees a name; unregistering an unknown name does nothing") {
  otp::node n({.deterministic = true});
  auto& reg = otp::registry::of(n);
  auto a = n.spawn(wait_for_string);
  auto b = n.spawn(wait_for_string);
  REQUIRE(reg.register_name("x", a));
  CHECK(reg.unregister_name("x"));
  CHECK_FALSE(reg.unregister_name("x"));
  CHECK_FALSE(reg.unregister_name("never"));
  CHECK_FALSE(reg.whereis("x"));
  REQUIRE(reg.register_name("x", b));   // the name is free
  REQUIRE(reg.register_name("y", a));   // and a may take another one
  CHECK(reg.whereis("x") == b);
}

TEST_CASE("a name is free before the exit is heard of, so a restart can take it at once") {
  otp::node n({.deterministic = true});
  auto& reg = otp::registry::of(n);
  auto first = n.spawn(wait_for_string);
  REQUIRE(reg.register_name("worker", first));
  std::optional<bool> free_at_down;
  otp::result<void> reregistered = otp::error{otp::errc::timeout};
  otp::pid second;
  n.spawn([&]() -> otp::task<void> {
    (void)otp::monitor(first);
    otp::exit(first, otp::exit_reason::kill());
    (void)co_await otp::receive<otp::down_msg>();
    free_at_down = !otp::whereis("worker").has_value();
    second = otp::spawn(wait_for_string);
    reregistered = otp::register_name("worker", second);
  });
  n.run_until_idle();
  REQUIRE(free_at_down);
  CHECK(*free_at_down);
  CHECK(reregistered.has_value());
  CHECK(reg.whereis("worker") == second);
}

TEST_CASE("a send to a name nobody holds fails with noproc and sends nothing") {
  otp::node n({.deterministic = true});
  otp::result<void> r = otp::outcome::success();
  n.spawn([&]() -> otp::task<void> {
    r = otp::send("nobody", 1);
    co_return;
  });
  n.run_until_idle();
  REQUIRE(r.has_error());
  CHECK(r.error() == otp::errc::noproc);
  CHECK(r.error().context.find("'nobody'") != std::string::npos);
}

TEST_CASE("the name functions need a process; the registry object does not") {
  CHECK_THROWS_AS((void)otp::whereis("x"), std::system_error);
  CHECK_THROWS_AS((void)otp::register_name("x", otp::pid{}), std::system_error);
  otp::node n({.deterministic = true});
  CHECK_FALSE(otp::registry::of(n).whereis("x"));
}

TEST_CASE("concurrent registrations of one name from many threads: exactly one wins") {
  otp::node n({.schedulers = 2});
  auto& reg = otp::registry::of(n);
  constexpr int contenders = 8;
  std::vector<otp::pid> pids;
  for (int i = 0; i < contenders; ++i)
    pids.push_back(n.spawn(wait_for_string));
  std::atomic<int> wins{0}, already{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < contenders; ++i)
    threads.emplace_back([&, i] {
      auto r = reg.register_name("leader", pids[static_cast<std::size_t>(i)]);
      if (r)
        ++wins;
      else if (r.error() == otp::errc::already_started)
        ++already;
    });
  for (auto& t : threads)
    t.join();
  CHECK(wins == 1);
  CHECK(already == contenders - 1);
  auto holder = reg.whereis("leader");
  REQUIRE(holder);
  CHECK(std::find(pids.begin(), pids.end(), *holder) != pids.end());
}

TEST_CASE("names held by processes of a node that shuts down are released") {
  otp::node n({.schedulers = 2});
  auto& reg = otp::registry::of(n);
  for (int i = 0; i < 50; ++i) {
    auto p = n.spawn(wait_for_string);
    REQUIRE(reg.register_name("p" + std::to_string(i), p));
  }
  n.shutdown();
  CHECK(reg.registered().empty());
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("registry/names");

TEST_CASE("registering again after unregister keeps one exit hook, and exit still frees the name") {
  otp::node n({.deterministic = true});
  auto& reg = otp::registry::of(n);
  auto p = n.spawn(wait_for_string);
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(reg.register_name("again", p));
    REQUIRE(reg.unregister_name("again"));
  }
  REQUIRE(reg.register_name("again", p));
  n.run_until_idle();
  otp::exit(p, otp::exit_reason::kill());
  n.run_until_idle();
  CHECK_FALSE(reg.whereis("again"));
  auto q = n.spawn(wait_for_string);
  CHECK(reg.register_name("again", q));
}

TEST_SUITE_END();
