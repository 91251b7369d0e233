// SPDX-License-Identifier: Apache-2.0
// The keyed registry (Elixir's Registry) and process groups (OTP's pg).
#include "registry/keyed_registry.hpp"
#include "registry/pg.hpp"

#include "otp/otp.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <latch>
#include <string>
#include <vector>

namespace {

otp::task<void> wait_for_string() { co_await otp::receive<std::string>(); }

template <class F>
void run(otp::node& n, F body) {
  n.spawn(std::move(body));
  n.run_until_idle();
}

} // namespace

TEST_SUITE_BEGIN("registry/keyed");

TEST_CASE("a unique key holds one process; a second registration names the holder") {
  otp::node n({.deterministic = true});
  auto& reg = otp::keyed_registry<std::string, int>::create(n);
  otp::pid first;
  std::optional<otp::error> dup;
  first = n.spawn([&]() -> otp::task<void> {
    REQUIRE(reg.register_key("user:1", 10));
    co_await otp::receive<std::string>();
  });
  n.run_until_idle();
  run(n, [&]() -> otp::task<void> {
    auto r = reg.register_key("user:1", 20);
    dup = r.error();
    co_return;
  });
  REQUIRE(dup);
  CHECK(*dup == otp::errc::already_started);
  CHECK(dup->context.find(first.to_string()) != std::string::npos);
  CHECK(dup->context.find("'user:1'") != std::string::npos);
  auto found = reg.lookup("user:1");
  REQUIRE(found.size() == 1);
  CHECK(found[0].pid == first);
  CHECK(found[0].value == 10);
  CHECK(reg.whereis("user:1") == first);
  CHECK(reg.count() == 1);
}

TEST_CASE("duplicate keys gather processes; dispatch and match reach them by value") {
  otp::node n({.deterministic = true});
  auto& topics = otp::keyed_registry<std::string, int>::create(n, {.keys = otp::keys::duplicate});
  std::vector<otp::pid> subs;
  std::vector<std::string> got;
  for (int i = 0; i < 3; ++i) {
    subs.push_back(n.spawn([&, i]() -> otp::task<void> {
      REQUIRE(topics.register_key("news", i));
      got.push_back(std::to_string(i) + ":" + co_await otp::receive<std::string>());
    }));
  }
  n.run_until_idle();
  CHECK(topics.lookup("news").size() == 3);
  auto high = topics.match("news", [](int v) { return v >= 1; });
  CHECK(high.size() == 2);
  const std::size_t sent =
    topics.dispatch("news", [](const otp::pid& p, const int& v) { otp::send(p, "hello " + std::to_string(v)); });
  CHECK(sent == 3);
  n.run_until_idle();
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::string>{"0:hello 0", "1:hello 1", "2:hello 2"});
  // They all exited: their entries went with them.
  CHECK(topics.lookup("news").empty());
  CHECK(topics.count() == 0);
  CHECK(topics.all_keys().empty());
}

TEST_CASE("a process's entries are removed when it exits, and it can unregister and update") {
  otp::node n({.deterministic = true});
  auto& reg = otp::keyed_registry<int, std::string>::create(n, {.keys = otp::keys::duplicate, .partitions = 3});
  otp::pid p = n.spawn([&]() -> otp::task<void> {
    REQUIRE(reg.register_key(1, "a"));
    REQUIRE(reg.register_key(1, "b"));
    REQUIRE(reg.register_key(2, "c"));
    CHECK(reg.keys_of(otp::self()).size() == 3);
    CHECK(reg.unregister_key(1) == 2);
    CHECK(reg.keys_of(otp::self()) == std::vector<int>{2});
    co_await otp::receive<std::string>();
  });
  n.run_until_idle();
  CHECK(reg.lookup(1).empty());
  CHECK(reg.lookup(2).size() == 1);
  otp::exit(p, otp::exit_reason::kill());
  n.run_until_idle();
  CHECK(reg.lookup(2).empty());
  CHECK(reg.keys_of(p).empty());

  auto& unique = otp::keyed_registry<std::string, int>::create(n);
  std::optional<int> updated, missing;
  run(n, [&]() -> otp::task<void> {
    REQUIRE(unique.register_key("n", 1));
    updated = unique.update_value("n", [](const int& v) { return v + 41; });
    missing = unique.update_value("other", [](const int& v) { return v; });
    co_return;
  });
  CHECK(updated == 42);
  CHECK_FALSE(missing);
}

TEST_CASE("registering a dead or empty pid fails with noproc and leaves nothing") {
  otp::node n({.deterministic = true});
  auto& reg = otp::keyed_registry<std::string>::create(n, {.keys = otp::keys::duplicate});
  auto dead = n.spawn([]() -> otp::task<void> { co_return; });
  n.run_until_idle();
  auto r = reg.register_pid(dead, "k");
  REQUIRE(r.has_error());
  CHECK(r.error() == otp::errc::noproc);
  CHECK(reg.lookup("k").empty());
  CHECK(reg.register_pid(otp::pid{}, "k").error() == otp::errc::noproc);
  // A via registration needs unique keys.
  auto live = n.spawn(wait_for_string);
  CHECK(reg.register_name("k", live).error() == otp::errc::invalid_argument);
  // Outside a process, register_key has no caller to register.
  CHECK_THROWS_AS((void)reg.register_key("k"), std::system_error);
}

TEST_CASE("concurrent registrations of one unique key from two schedulers: exactly one wins") {
  for (int round = 0; round < 20; ++round) {
    otp::node n({.schedulers = 2});
    auto& reg = otp::keyed_registry<std::string>::create(n);
    std::atomic<int> won{0}, lost{0};
    std::latch both_done(2);
    std::vector<otp::watched_process> ws;
    for (unsigned s = 0; s < 2; ++s) {
      ws.push_back(n.spawn_watch({.scheduler = s}, [&]() -> otp::task<void> {
        for (int i = 0; i < 50; ++i) {
          auto r = reg.register_key("leader:" + std::to_string(i));
          (r ? won : lost)++;
        }
        both_done.count_down();
        co_await otp::receive<std::string>(); // hold the keys until checked
      }));
    }
    both_done.wait();
    CHECK(won == 50);
    CHECK(lost == 50);
    CHECK(reg.count() == 50);
    for (auto& w : ws)
      otp::send(w.pid, std::string("exit"));
    for (auto& w : ws)
      CHECK(w.exit.get().is_normal());
    CHECK(reg.count() == 0); // both exited
  }
}

TEST_SUITE_END();

TEST_SUITE_BEGIN("registry/pg");

TEST_CASE("processes join and leave groups; members are listed once per join") {
  otp::node n({.deterministic = true});
  auto a = n.spawn(wait_for_string);
  auto b = n.spawn(wait_for_string);
  auto& groups = otp::process_groups::of(n);
  REQUIRE(groups.join("room", a));
  REQUIRE(groups.join("room", b));
  REQUIRE(groups.join("room", a));
  CHECK(groups.members("room") == std::vector<otp::pid>{a, b, a});
  CHECK(groups.leave("room", a));
  CHECK(groups.members("room") == std::vector<otp::pid>{b, a});
  CHECK_FALSE(groups.leave("other", a)); // not joined
  CHECK(groups.which_groups() == std::vector<std::string>{"room"});
  CHECK(groups.send("room", std::string("bye")) == 2);
  n.run_until_idle();
  // Both received and exited: they left every group.
  CHECK(groups.members("room").empty());
  CHECK(groups.which_groups().empty());
}

TEST_CASE("pg's free functions act for the calling process; bad joins are refused") {
  otp::node n({.deterministic = true});
  std::vector<otp::pid> members;
  bool left = false;
  run(n, [&]() -> otp::task<void> {
    REQUIRE(otp::pg::join("workers"));
    members = otp::pg::members("workers");
    left = otp::pg::leave("workers");
    CHECK(otp::pg::join("").error() == otp::errc::invalid_argument);
    co_return;
  });
  REQUIRE(members.size() == 1);
  CHECK(left);
  auto dead = n.spawn([]() -> otp::task<void> { co_return; });
  n.run_until_idle();
  CHECK(otp::process_groups::of(n).join("workers", dead).error() == otp::errc::noproc);
  CHECK(otp::process_groups::of(n).members("workers").empty());
}

TEST_SUITE_END();
