// SPDX-License-Identifier: Apache-2.0
// docs/otp_semantics.md points 8 to 11: gen_server calls, casts, start, continue, stop;
// requests of another module refused at once; crash reports (gen_server, proc_lib).
#include "behaviours/gen_server.hpp"

#include "otp/logger.hpp"
#include "otp/otp.hpp"
#include "registry/keyed_registry.hpp"
#include "registry/registry.hpp"
#include "supervisor/dynamic_supervisor.hpp"
#include "tests/support/counted.hpp"

#include <doctest/doctest.h>

#include <cstdint>

#include <chrono>
#include <optional>
#include <ostream>
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

TEST_CASE("a reply of another type than the call's fails the call with a clear error") {
  // A reply handle rebuilt with the wrong type compiles: the caller must
  // get an error at once, and the next call its own reply.
  struct wrong_replier {
    otp::call_result<int> handle_call(otp::context& ctx, counter::get) {
      const otp::from<int> f = ctx.defer_reply<int>();
      otp::reply(otp::from<std::string>(f.caller(), f.tag()), std::string("seven"));
      return otp::noreply;
    }
    int handle_call(otp::context&, counter::add a) { return a.n; }
  };
  otp::node n({.deterministic = true});
  std::optional<otp::error> wrong;
  int right = 0;
  run(n, [&]() -> otp::task<void> {
    auto s = co_await gs::start<wrong_replier>();
    REQUIRE(s);
    auto r = co_await gs::call(s.value(), counter::get{}, 5s);
    REQUIRE(r.has_error());
    wrong = r.error();
    right = (co_await gs::call(s.value(), counter::add{7}, 5s)).value();
  });
  REQUIRE(wrong);
  CHECK(*wrong == otp::errc::invalid_argument);
  CHECK(wrong->context.find("not of the type the call expects") != std::string::npos);
  CHECK(right == 7);
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

namespace {

// Starts an `infos` server and makes it set a 50 ms idle timeout.
otp::server_ref<infos> start_with_timeout(otp::node& n) {
  otp::server_ref<infos> server;
  run(n, [&]() -> otp::task<void> {
    auto s = co_await gs::start<infos>();
    server = s.value();
    (void)co_await gs::call(s.value(), counter::get{}); // sets a 50 ms timeout
  });
  return server;
}

} // namespace

TEST_CASE("an idle timeout delivers idle_timeout unless a message comes first") {
  otp::node n({.deterministic = true});
  const otp::server_ref<infos> server = start_with_timeout(n);
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

TEST_CASE("get_state and statistics do not cancel an idle timeout; it starts over after them, as in OTP") {
  // OTP 25: {ok, S, 100}, sys:get_state at 60 ms: the timeout comes at
  // 160 ms (sys's system_continue re-enters the loop with the same Time).
  otp::node n({.deterministic = true});
  const otp::server_ref<infos> server = start_with_timeout(n);
  n.advance(30ms);
  n.run_until_idle();
  run(n, [&]() -> otp::task<void> {
    (void)co_await gs::get_state(server);
    (void)co_await gs::statistics(server);
  });
  n.advance(40ms); // 70 ms since the call, 40 since get_state: not yet
  n.run_until_idle();
  std::vector<std::string> before, after;
  run(n, [&]() -> otp::task<void> { before = (co_await gs::get_state(server)).value().seen; });
  n.advance(60ms); // 60 ms after the last get_state: the timeout, once
  n.run_until_idle();
  run(n, [&]() -> otp::task<void> { after = (co_await gs::get_state(server)).value().seen; });
  CHECK(before.empty());
  CHECK(after == std::vector<std::string>{"timeout"});
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

namespace {

// Every report, as owned data (log_event's domain and kind are views).
struct captured_log {
  struct report {
    otp::log_level level;
    std::string domain, kind, text;
    std::vector<otp::log_field> fields;
    [[nodiscard]] const std::string* field(std::string_view key) const {
      for (const auto& f : fields)
        if (f.key == key)
          return &f.value;
      return nullptr;
    }
  };
  std::vector<report> reports;
  captured_log() {
    otp::set_log_handler([this](const otp::log_event& e) {
      reports.push_back({e.level, std::string(e.domain), std::string(e.kind), e.text, e.fields});
    });
  }
  captured_log(const captured_log&) = delete;
  captured_log& operator=(const captured_log&) = delete;
  ~captured_log() { otp::set_log_handler({}); }
  [[nodiscard]] std::vector<const report*> of(std::string_view domain, std::string_view kind) const {
    std::vector<const report*> out;
    for (const auto& r : reports)
      if (r.domain == domain && r.kind == kind)
        out.push_back(&r);
    return out;
  }
};

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

// Another module that also takes counter::get: a call<other_module> compiles
// against any server, and only the server can tell it is not its protocol.
struct other_module {
  int handle_call(otp::context&, counter::get) { return -1; }
  void handle_cast(otp::context&, counter::add) {}
};

struct session {
  std::string user;
};

} // namespace

TEST_CASE("a request of another module's protocol fails at once with bad_request; the server lives on") {
  captured_log captured;
  otp::node n({.deterministic = true});
  std::optional<otp::result<int>> foreign, state_of_other, after;
  run(n, [&]() -> otp::task<void> {
    const gs::start_options named{.name = "ctr"}; // a local: g++ 12 (docs/design.md, toolchain pitfalls)
    auto s = co_await gs::start_opt<counter>(named, 4);
    REQUIRE(s);
    foreign = co_await gs::call<other_module>("ctr", counter::get{});
    gs::cast<other_module>("ctr", counter::add{100});
    auto st = co_await gs::get_state<other_module>(s.value().pid());
    state_of_other = st ? otp::result<int>(0) : otp::result<int>(st.error());
    after = co_await gs::call(s.value(), counter::get{});
  });
  // No clock advance: the calls returned on their own, at once.
  REQUIRE(foreign);
  REQUIRE(foreign->has_error());
  CHECK(foreign->error() == otp::errc::bad_request);
  const std::string& why = foreign->error().context;
  CHECK(contains(why, "'ctr'"));         // which server refused
  CHECK(contains(why, "counter::get"));  // what was sent
  CHECK(contains(why, "other_module"));  // for which module
  REQUIRE(state_of_other);
  CHECK(state_of_other->error() == otp::errc::bad_request);
  REQUIRE(after);
  CHECK(after->value() == 4); // alive, and the foreign cast was not applied
  const auto refused = captured.of("gen_server", "bad_request");
  REQUIRE(refused.size() == 3);
  CHECK(refused[0]->level == otp::log_level::error);
  REQUIRE(refused[0]->field("request"));
  CHECK(contains(*refused[0]->field("request"), "counter::get"));
  REQUIRE(refused[1]->field("request"));
  CHECK(contains(*refused[1]->field("request"), "counter::add"));
  CHECK(contains(refused[1]->text, "cast"));
}

TEST_CASE("a dynamic_supervisor_ref of the wrong child type fails start_child at once") {
  captured_log captured;
  otp::node n({.deterministic = true});
  std::optional<otp::result<otp::pid>> started;
  run(n, [&]() -> otp::task<void> {
    otp::trap_exit(true);
    const otp::dynamic_child_spec<std::string> spec{
      .id = "session", .start = otp::dynamic_worker<session, std::string>()};
    auto sup = co_await otp::dynamic_supervisor::start_link<std::string>({}, spec);
    REQUIRE(sup);
    // A ref rebuilt from a pid with the wrong type: supervisor calls have no timeout.
    const otp::dynamic_supervisor_ref<int> wrong(sup.value().pid());
    started = co_await otp::dynamic_supervisor::start_child(wrong, 7);
    otp::exit(sup.value().pid(), otp::exit_reason::shutdown());
    (void)co_await otp::receive<otp::exit_msg>();
  });
  REQUIRE(started);
  REQUIRE(started->has_error());
  CHECK(started->error() == otp::errc::bad_request);
  // The supervisor's children take a std::string; the request gave an int.
  CHECK(contains(started->error().context, "string"));
  CHECK(contains(started->error().context, "int"));
  CHECK(captured.of("supervisor", "bad_request").size() == 1);
}

namespace {

// A server whose state prints (operator<<), and that crashes or stops on request.
struct fragile {
  struct crash {};
  struct stop_with {
    otp::exit_reason why;
  };
  int value = 42;
  int handle_call(otp::context&, crash) { throw std::runtime_error("fragile broke"); }
  int handle_call(otp::context& ctx, stop_with s) {
    ctx.stop(s.why);
    return 0;
  }
  void handle_cast(otp::context&, counter::add) { throw std::logic_error("bad cast"); }
  void handle_info(otp::context&, tick t) { otp::exit(otp::exit_reason::error("tick " + std::to_string(t.n))); }
  void init(otp::context&) { otp::trap_exit(true); }
  friend std::ostream& operator<<(std::ostream& os, const fragile& f) { return os << "fragile{" << f.value << "}"; }
};

// The same without operator<<: the report goes without the state.
struct opaque {
  void handle_cast(otp::context&, counter::add) { throw std::logic_error("bad cast"); }
};

} // namespace

TEST_CASE("a crashing gen_server logs OTP's terminating report, then proc_lib's crash report") {
  captured_log captured;
  otp::node n({.deterministic = true});
  otp::pid server, client;
  std::optional<otp::error> err;
  client = n.spawn([&]() -> otp::task<void> {
    const gs::start_options named{.name = "fragile"};
    auto s = co_await gs::start_opt<fragile>(named);
    REQUIRE(s);
    server = s.value().pid();
    err = (co_await gs::call(s.value(), fragile::crash{})).error();
  });
  n.run_until_idle();
  REQUIRE(err);
  CHECK(*err == otp::errc::exited);
  REQUIRE(captured.reports.size() == 2);
  const auto& gs_report = captured.reports[0];
  CHECK(gs_report.domain == "gen_server");
  CHECK(gs_report.kind == "terminate");
  CHECK(gs_report.level == otp::log_level::error);
  CHECK(*gs_report.field("name") == "'fragile'");
  CHECK(contains(*gs_report.field("last_message"), "fragile::crash"));
  CHECK(*gs_report.field("state") == "fragile{42}");
  CHECK(*gs_report.field("reason") == "{exception,std::runtime_error,\"fragile broke\"}");
  CHECK(*gs_report.field("client") == client.to_string());
  CHECK(contains(gs_report.text, "** Generic server 'fragile' terminating\n"));
  CHECK(contains(gs_report.text, "** When Server state == fragile{42}\n"));
  const auto& crash = captured.reports[1];
  CHECK(crash.domain == "proc_lib");
  CHECK(crash.kind == "crash_report");
  CHECK(*crash.field("pid") == server.to_string());
  CHECK(*crash.field("reason") == "{exception,std::runtime_error,\"fragile broke\"}");
  CHECK(*crash.field("class") == "error");
}

TEST_CASE("an unsupervised gen_server that crashes in a cast or handle_info is reported, not silent") {
  captured_log captured;
  otp::node n({.deterministic = true});
  run(n, [&]() -> otp::task<void> {
    auto o = co_await gs::start<opaque>();
    gs::cast(o.value(), counter::add{1});
    auto f = co_await gs::start<fragile>();
    otp::send(f.value(), tick{3});
  });
  const auto terminating = captured.of("gen_server", "terminate");
  REQUIRE(terminating.size() == 2);
  CHECK(contains(*terminating[0]->field("last_message"), "{'$gen_cast',"));
  CHECK(contains(*terminating[0]->field("last_message"), "counter::add}"));
  CHECK(terminating[0]->field("state") == nullptr); // opaque does not print
  CHECK_FALSE(contains(terminating[0]->text, "When Server state"));
  CHECK(terminating[0]->field("client") == nullptr);
  CHECK(contains(*terminating[1]->field("last_message"), "tick"));
  CHECK(*terminating[1]->field("reason") == "tick 3");
  const auto crashes = captured.of("proc_lib", "crash_report");
  REQUIRE(crashes.size() == 2);
  CHECK(*crashes[1]->field("reason") == "tick 3");
  CHECK(*crashes[1]->field("class") == "exit");
}

TEST_CASE("a gen_server that stops with an abnormal reason is reported; normal and shutdown are not") {
  captured_log captured;
  otp::node n({.deterministic = true});
  std::optional<otp::result<void>> stopped;
  run(n, [&]() -> otp::task<void> {
    for (const auto& why : {otp::exit_reason::normal(), otp::exit_reason::shutdown(),
                            otp::exit_reason::shutdown("maintenance"), otp::exit_reason::error("bad")}) {
      auto s = co_await gs::start<fragile>();
      fragile::stop_with stop{why}; // a local: g++ 12 (docs/design.md, toolchain pitfalls)
      (void)co_await gs::call(s.value(), std::move(stop));
    }
    auto s = co_await gs::start<fragile>();
    stopped = co_await gs::stop(s.value(), otp::exit_reason::error("stopped badly"));
    auto quiet = co_await gs::start<fragile>();
    (void)co_await gs::stop(quiet.value(), otp::exit_reason::shutdown());
  });
  const auto terminating = captured.of("gen_server", "terminate");
  REQUIRE(terminating.size() == 2);
  CHECK(*terminating[0]->field("reason") == "bad");
  CHECK(contains(*terminating[0]->field("last_message"), "stop_with"));
  CHECK(*terminating[1]->field("reason") == "stopped badly");
  CHECK(*terminating[1]->field("last_message") == "gen_server::stop");
  const auto crashes = captured.of("proc_lib", "crash_report");
  REQUIRE(crashes.size() == 2);
  CHECK(*crashes[0]->field("reason") == "bad");
  CHECK(*crashes[1]->field("reason") == "stopped badly");
  CHECK(captured.reports.size() == 4);
}

namespace {

struct bad_terminate {
  int handle_call(otp::context& ctx, counter::get) {
    ctx.stop(otp::exit_reason::shutdown());
    return 7;
  }
  void terminate(otp::context&, const otp::exit_reason&) { throw std::runtime_error("terminate broke"); }
};

} // namespace

TEST_CASE("a crash in terminate after {stop, R, Reply}: the reply is still sent, and the crash is reported") {
  captured_log captured;
  otp::node n({.deterministic = true});
  std::optional<otp::result<int>> got;
  run(n, [&]() -> otp::task<void> {
    auto s = co_await gs::start<bad_terminate>();
    got = co_await gs::call(s.value(), counter::get{});
  });
  REQUIRE(got);
  CHECK(got->value() == 7); // OTP: terminate runs in a `try ... after reply`
  const auto terminating = captured.of("gen_server", "terminate");
  REQUIRE(terminating.size() == 1);
  CHECK(*terminating[0]->field("reason") == "{exception,std::runtime_error,\"terminate broke\"}");
  CHECK(captured.of("proc_lib", "crash_report").size() == 1);
}

TEST_CASE("a trapping gen_server stopped by its parent's abnormal exit is reported with the 'EXIT'") {
  captured_log captured;
  otp::node n({.deterministic = true});
  otp::pid parent = n.spawn([&]() -> otp::task<void> {
    auto s = co_await gs::start_link<fragile>();
    REQUIRE(s);
    co_await otp::receive<std::string>();
  });
  n.run_until_idle();
  n.exit(parent, otp::exit_reason::error("parent_bad"));
  n.run_until_idle();
  const auto terminating = captured.of("gen_server", "terminate");
  REQUIRE(terminating.size() == 1);
  CHECK(*terminating[0]->field("last_message") == "{'EXIT'," + parent.to_string() + ",parent_bad}");
  CHECK(captured.of("proc_lib", "crash_report").size() == 1);
  CHECK(captured.reports.size() == 2); // the parent was killed by a signal: no report of its own
}

TEST_CASE("a failed init gives proc_lib's crash report only, as in OTP") {
  captured_log captured;
  otp::node n({.deterministic = true});
  run(n, [&]() -> otp::task<void> {
    (void)co_await gs::start<init_throws>();
    (void)co_await gs::start<init_stops>();
    (void)co_await gs::start<init_ignores>();
  });
  CHECK(captured.of("gen_server", "terminate").empty());
  const auto crashes = captured.of("proc_lib", "crash_report");
  REQUIRE(crashes.size() == 2);
  CHECK(contains(*crashes[0]->field("reason"), "no database"));
  CHECK(*crashes[1]->field("reason") == "bad_config");
}

TEST_CASE("a plain process that ends abnormally on its own gets proc_lib's crash report") {
  captured_log captured;
  otp::node n({.deterministic = true});
  const otp::pid thrower = n.spawn([]() -> otp::task<void> {
    throw std::out_of_range("index 7");
    co_return;
  });
  n.run_until_idle();
  const otp::pid exiter = n.spawn([]() -> otp::task<void> {
    otp::exit(otp::exit_reason::error("plainbad"));
    co_return;
  });
  n.run_until_idle();
  const auto crashes = captured.of("proc_lib", "crash_report");
  REQUIRE(crashes.size() == 2);
  CHECK(*crashes[0]->field("pid") == thrower.to_string());
  CHECK(*crashes[0]->field("reason") == "{exception,std::out_of_range,\"index 7\"}");
  CHECK(*crashes[0]->field("class") == "error");
  CHECK(contains(crashes[0]->text, "exception error: {exception,std::out_of_range"));
  CHECK(*crashes[1]->field("pid") == exiter.to_string());
  CHECK(*crashes[1]->field("class") == "exit");
  CHECK(captured.reports.size() == 2);
}

TEST_CASE("no crash report for a normal exit, shutdown, {shutdown,_}, kill or another process's exit signal") {
  captured_log captured;
  otp::node n({.deterministic = true});
  n.spawn([]() -> otp::task<void> { co_return; });
  n.spawn([]() -> otp::task<void> {
    otp::exit(otp::exit_reason::normal());
    co_return;
  });
  n.spawn([]() -> otp::task<void> {
    otp::exit(otp::exit_reason::shutdown());
    co_return;
  });
  n.spawn([]() -> otp::task<void> {
    otp::exit(otp::exit_reason::shutdown("done"));
    co_return;
  });
  const otp::pid killed = n.spawn([]() -> otp::task<void> { co_await otp::receive<std::string>(); });
  const otp::pid signalled = n.spawn([]() -> otp::task<void> { co_await otp::receive<std::string>(); });
  n.run_until_idle();
  n.exit(killed, otp::exit_reason::kill());
  n.exit(signalled, otp::exit_reason::error("from_outside"));
  n.run_until_idle();
  // A gen_server killed by its supervisor's kind of exit runs no code either.
  run(n, [&]() -> otp::task<void> {
    auto s = co_await gs::start<counter>();
    otp::exit(s.value(), otp::exit_reason::kill());
  });
  CHECK(n.process_count() == 0);
  CHECK(captured.reports.empty());
}

TEST_SUITE_END();

namespace {
// A request aligned beyond the 16 bytes of a pool block.
struct alignas(64) wide_request {
  static inline int misplaced = 0;
  int n = 0;
  explicit wide_request(int v) : n(v) { check(); }
  wide_request(const wide_request& o) : n(o.n) { check(); }
  wide_request(wide_request&& o) noexcept : n(o.n) { check(); }
  wide_request& operator=(const wide_request&) = default;
  ~wide_request() = default;
  void check() const {
    volatile std::uintptr_t at = reinterpret_cast<std::uintptr_t>(this); // the compiler may not assume it
    if (at % alignof(wide_request) != 0)
      ++misplaced;
  }
};
struct wide_server {
  int total = 0;
  // By reference: the request is read where the envelope holds it (a copy
  // in the server's coroutine frame would be only 16-aligned).
  int handle_call(otp::context&, wide_request&& r) { return total += r.n; }
  void handle_cast(otp::context&, const wide_request& r) { total += r.n; }
};
// Requests built outside a coroutine, and not inlined into one: a coroutine
// frame is only 16-aligned (docs/design.md, toolchain pitfalls), so a
// temporary in one would be too.
[[gnu::noinline]] void cast_wide(const otp::server_ref<wide_server>& s, int n) {
  otp::gen_server::cast(s, wide_request{n});
}
[[gnu::noinline]] auto call_wide(const otp::server_ref<wide_server>& s, int n) { return otp::gen_server::call(s, wide_request{n}); }
} // namespace

TEST_CASE("a request type aligned beyond 16 bytes is built where it fits") {
  otp::node n({.deterministic = true});
  int got = 0;
  run(n, [&]() -> otp::task<void> {
    auto s = (co_await otp::gen_server::start_link<wide_server>()).value();
    for (int i = 1; i <= 16; ++i)
      cast_wide(s, i);
    auto r = co_await call_wide(s, 100);
    got = r.value();
  });
  CHECK(got == 16 * 17 / 2 + 100);
  CHECK(wide_request::misplaced == 0);
}
