// SPDX-License-Identifier: Apache-2.0
// OTP_SEMANTICS.md points 8 to 11: gen_server calls, casts, start, continue, stop.
#include "behaviours/gen_server.hpp"

#include "otp/otp.hpp"
#include "registry/keyed_registry.hpp"
#include "registry/registry.hpp"
#include "tests/support/counted.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

using namespace std::chrono_literals;
namespace gs = otp::gen_server;

namespace {

// A counter: typed calls with their own reply types, a void call, a cast.
struct counter {
  struct get {};
  struct add {
    int n;
  };
  struct name_of {};
  struct reset {};

  int value = 0;

  counter() = default;
  explicit counter(int start) : value(start) {}

  int handle_call(otp::context&, get) { return value; }
  int handle_call(otp::context&, add a) { return value += a.n; }
  std::string handle_call(otp::context&, name_of) { return "counter"; }
  void handle_call(otp::context&, reset) { value = 0; }
  void handle_cast(otp::context&, add a) { value += a.n; }
};
static_assert(otp::gen_server_module<counter>);
static_assert(std::is_same_v<otp::detail::call_reply_t<counter, counter::get>, int>);
static_assert(std::is_same_v<otp::detail::call_reply_t<counter, counter::name_of>, std::string>);
static_assert(std::is_same_v<otp::detail::call_reply_t<counter, counter::reset>, void>);

// Runs `body` as a process of a deterministic node until everything is idle.
template <class F>
void run(otp::node& n, F body) {
  n.spawn(std::move(body));
  n.run_until_idle();
}

} // namespace

TEST_SUITE_BEGIN("behaviours/gen_server");

TEST_CASE("a call returns the reply of the handle_call overload for its request type") {
  otp::node n({.deterministic = true});
  bool done = false;
  run(n, [&]() -> otp::task<void> {
    auto s = co_await gs::start<counter>(5);
    REQUIRE(s);
    CHECK((co_await gs::call(s.value(), counter::get{})).value() == 5);
    CHECK((co_await gs::call(s.value(), counter::add{3})).value() == 8);
    CHECK((co_await gs::call(s.value(), counter::name_of{})).value() == "counter");
    auto r = co_await gs::call(s.value(), counter::reset{});
    CHECK(r.has_value());
    gs::cast(s.value(), counter::add{2});
    CHECK((co_await gs::call(s.value(), counter::get{})).value() == 2);
    CHECK((co_await gs::call<counter>(s.value().pid(), counter::get{})).value() == 2);
    done = true;
  });
  CHECK(done);
}

namespace {

struct slow_init {
  int ready = 0;
  otp::task<void> init(otp::context&) {
    co_await otp::sleep_for(10ms);
    ready = 1;
  }
  int handle_call(otp::context&, counter::get) { return ready; }
};

struct init_stops {
  otp::init_result init(otp::context&) { return otp::init_result::stop(otp::exit_reason::error("bad_config")); }
};

struct init_ignores {
  otp::init_result init(otp::context&) { return otp::init_result::ignore(); }
};

struct init_throws {
  void init(otp::context&) { throw std::runtime_error("no database"); }
};

struct ctor_throws {
  ctor_throws() { throw std::invalid_argument("bad argument"); }
};

} // namespace

TEST_CASE("start returns once init returned, and the server is ready") {
  otp::node n({.deterministic = true});
  std::optional<int> seen;
  n.spawn([&]() -> otp::task<void> {
    auto s = co_await gs::start<slow_init>();
    REQUIRE(s);
    seen = (co_await gs::call(s.value(), counter::get{})).value();
  });
  n.run_until_idle();
  CHECK_FALSE(seen);
  n.advance(10ms);
  n.run_until_idle();
  CHECK(seen == 1);
}

TEST_CASE("an init that stops, ignores or throws makes start fail, and the caller lives on") {
  otp::node n({.deterministic = true});
  std::vector<std::string> log;
  auto caller = n.spawn([&]() -> otp::task<void> {
    // g++ 12: no aggregate temporaries inside co_await (docs/design.md): options are locals.
    const gs::start_options named_linked{.name = "db", .link = true};
    auto a = co_await gs::start_opt<init_stops>(named_linked);
    REQUIRE(a.has_error());
    CHECK(a.error() == otp::errc::exited);
    CHECK(a.error().reason == otp::exit_reason::error("bad_config"));
    CHECK_FALSE(otp::whereis("db")); // unregistered before start returned
    log.push_back("stop");

    auto b = co_await gs::start_link<init_ignores>();
    REQUIRE(b.has_error());
    CHECK(b.error() == otp::errc::ignored);
    log.push_back("ignore");

    auto c = co_await gs::start_link<init_throws>();
    REQUIRE(c.has_error());
    CHECK(c.error() == otp::errc::exited);
    CHECK(c.error().reason.exception_type() == "std::runtime_error");
    CHECK(c.error().reason.detail() == "no database");
    CHECK(c.error().message().find("no database") != std::string::npos);
    log.push_back("throw");

    auto d = co_await gs::start_link<ctor_throws>();
    REQUIRE(d.has_error());
    CHECK(d.error().reason.exception_type() == "std::invalid_argument");
    log.push_back("ctor");
    // The failed servers were unlinked before they exited: nothing reaches us.
    auto stray = co_await otp::receive_for<otp::exit_msg>(0ms);
    CHECK_FALSE(stray);
    co_await otp::receive<std::string>();
  });
  n.run_until_idle();
  CHECK(log == std::vector<std::string>{"stop", "ignore", "throw", "ctor"});
  CHECK(n.info(caller)); // still alive, waiting
  CHECK(n.process_count() == 1);
}

TEST_CASE("a start timeout kills a slow init and returns `timeout`") {
  otp::node n({.deterministic = true});
  std::optional<otp::result<otp::server_ref<slow_init>>> got;
  auto caller = n.spawn([&]() -> otp::task<void> {
    const gs::start_options opts{.link = true, .init_timeout = 5ms};
    got = co_await gs::start_opt<slow_init>(opts);
    co_await otp::receive<std::string>();
  });
  n.run_until_idle();
  n.advance(5ms);
  n.run_until_idle();
  REQUIRE(got);
  REQUIRE(got->has_error());
  CHECK(got->error() == otp::errc::timeout);
  CHECK(n.info(caller)); // the kill did not come back through the link
  CHECK(n.process_count() == 1);
}

namespace {

struct named {
  std::optional<otp::pid> found_in_init;
  void init(otp::context&) { found_in_init = otp::whereis("named"); }
  bool handle_call(otp::context& ctx, counter::get) { return found_in_init == ctx.self(); }
};

} // namespace

TEST_CASE("a named server is registered before its init, and a second start of the name fails") {
  otp::node n({.deterministic = true});
  std::vector<otp::result<otp::server_ref<named>>> results;
  for (int i = 0; i < 2; ++i) {
    n.spawn([&]() -> otp::task<void> {
      const gs::start_options opts{.name = "named"};
      results.push_back(co_await gs::start_opt<named>(opts));
      co_await otp::receive<std::string>();
    });
  }
  n.run_until_idle();
  REQUIRE(results.size() == 2);
  const int ok = (results[0] ? 1 : 0) + (results[1] ? 1 : 0);
  CHECK(ok == 1);
  const auto& winner = results[0] ? results[0] : results[1];
  const auto& loser = results[0] ? results[1] : results[0];
  CHECK(loser.error() == otp::errc::already_started);
  CHECK(loser.error().context.find(winner.value().pid().to_string()) != std::string::npos);
  bool registered_in_init = false;
  run(n, [&]() -> otp::task<void> {
    registered_in_init = (co_await gs::call<named>("named", counter::get{})).value();
  });
  CHECK(registered_in_init);
  CHECK(n.process_count() == 3); // two waiting starters and the one server
}

namespace {

struct crashes {
  struct boom {};
  std::vector<std::string>* log;
  explicit crashes(std::vector<std::string>* l) : log(l) {}
  int handle_call(otp::context&, boom) { throw std::runtime_error("boom"); }
  int handle_call(otp::context&, counter::get) { return 1; }
  void terminate(otp::context&, const otp::exit_reason& why) { log->push_back("terminate " + why.to_string()); }
};

// Keeps the caller's handle and answers only when a cast says so.
struct never_replies {
  otp::call_result<int> handle_call(otp::context& ctx, counter::get) {
    held = ctx.defer_reply<int>();
    return otp::noreply;
  }
  void handle_cast(otp::context&, counter::add a) { otp::reply(held, a.n); }
  otp::from<int> held;
};

} // namespace

TEST_CASE("calls fail with a clear error: unknown name, dead server, self, timeout") {
  otp::node n({.deterministic = true});
  std::vector<std::string> log;
  bool done = false;
  run(n, [&]() -> otp::task<void> {
    auto unknown = co_await gs::call<counter>("nobody", counter::get{});
    REQUIRE(unknown.has_error());
    CHECK(unknown.error() == otp::errc::noproc);
    CHECK(unknown.error().context.find("'nobody'") != std::string::npos);

    auto s = co_await gs::start<counter>();
    REQUIRE(s);
    (void)co_await gs::stop(s.value());
    auto dead = co_await gs::call(s.value(), counter::get{});
    REQUIRE(dead.has_error());
    CHECK(dead.error() == otp::errc::noproc);

    auto empty = co_await gs::call<counter>(otp::pid{}, counter::get{});
    CHECK(empty.error() == otp::errc::noproc);
    done = true;
  });
  CHECK(done);

  // A server that calls itself.
  struct self_caller {
    otp::task<bool> handle_call(otp::context& ctx, counter::get) {
      auto r = co_await gs::call<self_caller>(ctx.self(), counter::add{1});
      co_return r.error() == otp::errc::calling_self;
    }
    int handle_call(otp::context&, counter::add) { return 0; }
  };
  bool self_refused = false;
  run(n, [&]() -> otp::task<void> {
    auto s = co_await gs::start<self_caller>();
    self_refused = (co_await gs::call(s.value(), counter::get{})).value();
  });
  CHECK(self_refused);
}

TEST_CASE("a server that dies during a call fails it with the server's exit reason") {
  otp::node n({.deterministic = true});
  std::vector<std::string> log;
  std::optional<otp::error> err;
  run(n, [&]() -> otp::task<void> {
    auto s = co_await gs::start<crashes>(&log);
    REQUIRE(s);
    auto r = co_await gs::call(s.value(), crashes::boom{});
    REQUIRE(r.has_error());
    err = r.error();
  });
  REQUIRE(err);
  CHECK(*err == otp::errc::exited);
  CHECK(err->reason.exception_type() == "std::runtime_error");
  CHECK(err->reason.detail() == "boom");
  // OTP: terminate runs for a crash in a callback, with the crash's reason.
  REQUIRE(log.size() == 1);
  CHECK(log[0].find("boom") != std::string::npos);
}

TEST_CASE("a call times out, and the late reply never reaches the caller's mailbox") {
  otp::node n({.deterministic = true});
  std::optional<otp::error> err;
  otp::pid caller;
  otp::server_ref<never_replies> server;
  caller = n.spawn([&]() -> otp::task<void> {
    auto s = co_await gs::start<never_replies>();
    server = s.value();
    auto r = co_await gs::call(s.value(), counter::get{}, 100ms);
    err = r.error();
    co_await otp::receive<std::string>();
  });
  n.run_until_idle();
  CHECK_FALSE(err);
  n.advance(100ms);
  n.run_until_idle();
  REQUIRE(err);
  CHECK(*err == otp::errc::timeout);
  CHECK(err->context.find("100 ms") != std::string::npos);
  // The server replies now, late: the reply is dropped on arrival.
  n.spawn([&]() -> otp::task<void> {
    gs::cast(server, counter::add{7});
    co_return;
  });
  n.run_until_idle();
  auto info = n.info(caller);
  REQUIRE(info);
  CHECK(info->message_queue_len == 0);
  CHECK(info->monitors.empty()); // and the call's monitor is gone
}

TEST_CASE("a server may reply later, from a handle kept in its state") {
  otp::node n({.deterministic = true});
  std::optional<int> got;
  otp::server_ref<never_replies> server;
  n.spawn([&]() -> otp::task<void> {
    auto s = co_await gs::start<never_replies>();
    server = s.value();
    got = (co_await gs::call(s.value(), counter::get{}, otp::infinity)).value();
  });
  n.run_until_idle();
  CHECK_FALSE(got);
  // Another process answers through the server (handle_cast replies).
  n.spawn([&]() -> otp::task<void> {
    gs::cast(server, counter::add{42});
    co_return;
  });
  n.run_until_idle();
  CHECK(got == 42);
}

namespace {

struct stops_with_reply {
  std::vector<std::string>* log;
  explicit stops_with_reply(std::vector<std::string>* l) : log(l) {}
  int handle_call(otp::context& ctx, counter::get) {
    ctx.stop(otp::exit_reason::shutdown("done"));
    return 99;
  }
  void terminate(otp::context&, const otp::exit_reason& why) { log->push_back("terminate " + why.to_string()); }
};

} // namespace

TEST_CASE("a server stops with a reply: terminate runs, then the reply, then the exit") {
  otp::node n({.deterministic = true});
  std::vector<std::string> log;
  std::optional<otp::exit_reason> down;
  run(n, [&]() -> otp::task<void> {
    auto s = co_await gs::start<stops_with_reply>(&log);
    auto ref = otp::monitor(s.value());
    auto r = co_await gs::call(s.value(), counter::get{});
    log.push_back("reply " + std::to_string(r.value()));
    auto d = co_await otp::receive<otp::down_msg>();
    CHECK(d.ref == ref);
    down = d.reason;
  });
  CHECK(log == std::vector<std::string>{"terminate {shutdown,done}", "reply 99"});
  CHECK(down == otp::exit_reason::shutdown("done"));
}

namespace {

struct tick {
  int n;
};
struct tock {};

struct infos {
  std::vector<std::string> seen;
  otp::task<void> handle_info(otp::context&, std::variant<tick, tock, otp::idle_timeout, otp::down_msg> m) {
    if (auto* t = std::get_if<tick>(&m))
      seen.push_back("tick " + std::to_string(t->n));
    else if (std::holds_alternative<tock>(m))
      seen.push_back("tock");
    else if (std::holds_alternative<otp::idle_timeout>(m))
      seen.push_back("timeout");
    else
      seen.push_back("down");
    co_return;
  }
  std::vector<std::string> handle_call(otp::context& ctx, counter::get) {
    ctx.set_timeout(50ms);
    return seen;
  }
};

} // namespace

TEST_CASE("plain messages reach handle_info by type; others are dropped and counted") {
  otp::node n({.deterministic = true});
  std::vector<std::string> seen;
  std::optional<otp::server_statistics> stats;
  run(n, [&]() -> otp::task<void> {
    auto s = co_await gs::start<infos>();
    otp::send(s.value(), tick{1});
    otp::send(s.value(), std::string("not for handle_info"));
    otp::send(s.value(), tock{});
    seen = (co_await gs::call(s.value(), counter::get{})).value();
    stats = (co_await gs::statistics(s.value())).value();
  });
  CHECK(seen == std::vector<std::string>{"tick 1", "tock"});
  REQUIRE(stats);
  CHECK(stats->infos == 2);
  CHECK(stats->unexpected == 1);
  CHECK(stats->calls == 1);
}

TEST_CASE("an idle timeout delivers idle_timeout unless a message comes first") {
  otp::node n({.deterministic = true});
  otp::server_ref<infos> server;
  run(n, [&]() -> otp::task<void> {
    auto s = co_await gs::start<infos>();
    server = s.value();
    (void)co_await gs::call(s.value(), counter::get{}); // sets a 50 ms timeout
  });
  n.advance(30ms);
  n.run_until_idle();
  n.advance(30ms); // 60 ms since the call: the timeout fired once
  n.run_until_idle();
  std::vector<std::string> seen;
  run(n, [&]() -> otp::task<void> {
    auto st = co_await gs::get_state(server);
    seen = st.value().seen;
  });
  CHECK(seen == std::vector<std::string>{"timeout"});
}

namespace {

struct continues {
  std::vector<std::string> steps;
  void init(otp::context& ctx) {
    steps.push_back("init");
    ctx.continue_with(std::string("load"));
  }
  otp::task<void> handle_continue(otp::context& ctx, std::string what) {
    steps.push_back(what);
    if (what == "load")
      ctx.continue_with(std::string("warm"));
    co_return;
  }
  std::vector<std::string> handle_call(otp::context&, counter::get) { return steps; }
};

} // namespace

TEST_CASE("handle_continue runs after init and before any message") {
  otp::node n({.deterministic = true});
  std::vector<std::string> steps;
  run(n, [&]() -> otp::task<void> {
    auto s = co_await gs::start<continues>();
    steps = (co_await gs::call(s.value(), counter::get{})).value();
  });
  CHECK(steps == std::vector<std::string>{"init", "load", "warm"});
}

namespace {

struct stoppable {
  std::vector<std::string>* log;
  otp::test::counted state;
  explicit stoppable(std::vector<std::string>* l) : log(l) {}
  void init(otp::context&) { otp::trap_exit(true); }
  otp::task<void> terminate(otp::context&, const otp::exit_reason& why) {
    log->push_back("terminate " + why.to_string());
    co_return;
  }
  int handle_call(otp::context&, counter::get) { return 0; }
};

// Busy in a cast until a `tock` comes, so a stop request waits in its mailbox.
struct busy {
  otp::task<void> handle_cast(otp::context&, counter::add) { co_await otp::receive<tock>(); }
};

} // namespace

TEST_CASE("stop runs terminate and waits for the exit; the state is destroyed once") {
  otp::test::counted::reset();
  otp::node n({.deterministic = true});
  std::vector<std::string> log;
  std::optional<otp::result<void>> stopped, again;
  run(n, [&]() -> otp::task<void> {
    auto s = co_await gs::start<stoppable>(&log);
    stopped = co_await gs::stop(s.value(), otp::exit_reason::shutdown());
    again = co_await gs::stop(s.value());
  });
  REQUIRE(stopped);
  CHECK(stopped->has_value());
  CHECK(log == std::vector<std::string>{"terminate shutdown"});
  REQUIRE(again);
  CHECK(again->error() == otp::errc::noproc);
  CHECK(otp::test::counted::alive() == 0);

  std::optional<otp::result<void>> timed_out;
  run(n, [&]() -> otp::task<void> {
    auto s = co_await gs::start<busy>();
    gs::cast(s.value(), counter::add{1}); // now busy until a tock
    timed_out = co_await gs::stop(s.value(), otp::exit_reason::normal(), 20ms);
  });
  n.advance(20ms);
  n.run_until_idle();
  REQUIRE(timed_out);
  CHECK(timed_out->error() == otp::errc::timeout);
}

TEST_CASE("a server that traps exits runs terminate when its parent shuts down") {
  otp::node n({.deterministic = true});
  std::vector<std::string> log;
  auto parent = n.spawn([&]() -> otp::task<void> {
    auto s = co_await gs::start_link<stoppable>(&log);
    REQUIRE(s);
    co_await otp::receive<std::string>();
  });
  n.run_until_idle();
  n.exit(parent, otp::exit_reason::shutdown());
  n.run_until_idle();
  CHECK(log == std::vector<std::string>{"terminate shutdown"});
  CHECK(n.process_count() == 0);
}

namespace {

struct failing_registry {
  otp::result<void> register_name(const std::string&, const otp::pid&) {
    throw std::runtime_error("registry is down");
  }
  void unregister_name(const std::string&) {}
  std::optional<otp::pid> whereis_name(const std::string&) { throw std::runtime_error("registry is down"); }
};

} // namespace

TEST_CASE("a server can be named through a via registry, and a failing one gives a clear error") {
  otp::node n({.deterministic = true});
  auto& sessions = otp::keyed_registry<std::string>::create(n);
  failing_registry broken;
  std::optional<int> got;
  std::optional<otp::error> start_err, call_err, dup_err;
  run(n, [&]() -> otp::task<void> {
    const gs::start_options c1{.name = otp::via(sessions, std::string("c1"))};
    auto s = co_await gs::start_opt<counter>(c1, 3);
    REQUIRE(s);
    got = (co_await gs::call<counter>(otp::via(sessions, std::string("c1")), counter::get{})).value();
    auto dup = co_await gs::start_opt<counter>(c1);
    dup_err = dup.error();
    const gs::start_options x{.name = otp::via(broken, std::string("x"))};
    auto bad = co_await gs::start_opt<counter>(x);
    start_err = bad.error();
    auto c = co_await gs::call<counter>(otp::via(broken, std::string("x")), counter::get{});
    call_err = c.error();
  });
  CHECK(got == 3);
  REQUIRE(dup_err);
  CHECK(*dup_err == otp::errc::already_started);
  REQUIRE(start_err);
  CHECK(*start_err == otp::errc::registry_failed);
  CHECK(start_err->context.find("registry is down") != std::string::npos);
  CHECK(start_err->context.find("'x'") != std::string::npos);
  REQUIRE(call_err);
  CHECK(*call_err == otp::errc::registry_failed);
  CHECK(n.process_count() == 1); // the one good server; the failed start left nothing
}

TEST_CASE("calls and casts work across schedulers") {
  otp::node n({.schedulers = 2});
  constexpr int clients = 8, calls = 500;
  std::atomic<int> ok{0};
  auto w = n.spawn_watch({.scheduler = 0}, [&]() -> otp::task<void> {
    const gs::start_options opts{.name = "shared", .scheduler = 1u};
    auto s = co_await gs::start_opt<counter>(opts);
    REQUIRE(s);
    std::vector<otp::pid> started;
    for (int c = 0; c < clients; ++c) {
      started.push_back(otp::spawn_opt({.scheduler = static_cast<unsigned>(c % 2), .monitor = true},
                                       [&ok]() -> otp::task<void> {
                                         for (int i = 0; i < calls; ++i) {
                                           gs::cast<counter>("shared", counter::add{1});
                                           auto r = co_await gs::call<counter>("shared", counter::add{0});
                                           if (r)
                                             ++ok;
                                         }
                                       })
                          .pid);
    }
    for (std::size_t i = 0; i < started.size(); ++i)
      (void)co_await otp::receive<otp::down_msg>();
    auto total = co_await gs::call(s.value(), counter::get{});
    CHECK(total.value() == clients * calls);
  });
  CHECK(w.exit.get() == otp::exit_reason::normal());
  CHECK(ok == clients * calls);
}

TEST_SUITE_END();
