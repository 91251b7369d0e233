// SPDX-License-Identifier: Apache-2.0
// Processes co_await Asio operations on their own scheduler.
#include "otp/otp.hpp"

#include "tests/support/counted.hpp"

#include <asio/ip/tcp.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <doctest/doctest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;
using asio::ip::tcp;
using otp::test::counted;

TEST_SUITE_BEGIN("otp/asio");

TEST_CASE("a process co_awaits an Asio timer on its scheduler") {
  otp::node n({.schedulers = 2});
  auto p = n.spawn_watch({.scheduler = 1}, []() -> otp::task<void> {
    asio::steady_timer t(otp::this_scheduler().get_executor(), 1ms);
    co_await t.async_wait(otp::use_process);
    otp::exit(otp::exit_reason::error(otp::this_scheduler().index() == 1 ? "on_1" : "elsewhere"));
  });
  CHECK(p.exit.get() == otp::exit_reason::error("on_1"));
}

TEST_CASE("an Asio object of another scheduler's io_context is refused at the co_await") {
  // The object would be used from two threads: the process's, and the
  // scheduler that runs its io_context. A socket made from a descriptor in
  // the awaiting process (as the samples do) is the way across.
  otp::node n({.schedulers = 2, .pin_threads = false});
  std::string what;
  auto p = n.spawn_watch({.scheduler = 1}, [&]() -> otp::task<void> {
    asio::steady_timer t(n.get_scheduler(0).get_executor(), 1ms);
    try {
      co_await t.async_wait(otp::use_process);
    } catch (const std::logic_error& e) {
      what = e.what();
    }
    asio::steady_timer mine(otp::this_scheduler().get_executor(), 1ms); // its own: fine
    co_await mine.async_wait(otp::use_process);
  });
  CHECK(p.exit.get() == otp::exit_reason::normal());
  CHECK(what.find("on scheduler 1 awaited an Asio object of scheduler 0's io_context") != std::string::npos);
}

TEST_CASE("two processes talk TCP over loopback") {
  otp::node n({.schedulers = 2});
  auto port = std::make_shared<std::atomic<unsigned short>>(0);
  auto server = n.spawn_watch({.scheduler = 0}, [port]() -> otp::task<void> {
    tcp::acceptor acceptor(otp::this_scheduler().get_executor(), {asio::ip::make_address("127.0.0.1"), 0});
    port->store(acceptor.local_endpoint().port());
    tcp::socket s = co_await acceptor.async_accept(otp::use_process);
    std::array<char, 5> buf{};
    co_await asio::async_read(s, asio::buffer(buf), otp::use_process);
    co_await asio::async_write(s, asio::buffer(buf), otp::use_process);
  });
  auto client = n.spawn_watch({.scheduler = 1}, [port]() -> otp::task<void> {
    while (port->load() == 0)
      co_await otp::yield();
    tcp::socket s(otp::this_scheduler().get_executor());
    co_await s.async_connect({asio::ip::make_address("127.0.0.1"), port->load()}, otp::use_process);
    co_await asio::async_write(s, asio::buffer(std::string("hello")), otp::use_process);
    std::array<char, 5> buf{};
    std::size_t got = co_await asio::async_read(s, asio::buffer(buf), otp::use_process);
    otp::exit(otp::exit_reason::error(std::string(buf.data(), got)));
  });
  CHECK(client.exit.get() == otp::exit_reason::error("hello"));
  CHECK(server.exit.get() == otp::exit_reason::normal());
}

TEST_CASE("an Asio error is thrown with use_process and returned with use_process_nothrow") {
  otp::node n({.schedulers = 1});
  // A port that was just free: nothing listens there now.
  unsigned short closed_port = 0;
  {
    asio::io_context io;
    tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    closed_port = a.local_endpoint().port();
  }
  auto thrower = n.spawn_watch({}, [closed_port]() -> otp::task<void> {
    tcp::socket s(otp::this_scheduler().get_executor());
    co_await s.async_connect({asio::ip::make_address("127.0.0.1"), closed_port}, otp::use_process);
  });
  auto r = thrower.exit.get();
  CHECK(r.which() == otp::exit_reason::kind::exception);
  CHECK(r.exception_type() == "std::system_error");

  auto quiet = n.spawn_watch({}, [closed_port]() -> otp::task<void> {
    tcp::socket s(otp::this_scheduler().get_executor());
    auto [ec] = co_await s.async_connect({asio::ip::make_address("127.0.0.1"), closed_port},
                                         otp::use_process_nothrow);
    otp::exit(otp::exit_reason::error(ec == asio::error::connection_refused ? "refused" : ec.message()));
  });
  CHECK(quiet.exit.get() == otp::exit_reason::error("refused"));
}

TEST_CASE("a process killed inside an Asio operation is destroyed and its operation cancelled") {
  counted::reset();
  otp::node n({.schedulers = 1});
  auto p = n.spawn([]() -> otp::task<void> {
    counted local;
    tcp::acceptor acceptor(otp::this_scheduler().get_executor(), {asio::ip::make_address("127.0.0.1"), 0});
    tcp::socket s = co_await acceptor.async_accept(otp::use_process);
  });
  while (counted::constructed.load() < 1)
    std::this_thread::yield();
  auto info = n.info(p);
  REQUIRE(info);
  CHECK(info->status == otp::process_info::status_t::suspended);
  // The killer monitors first, so the DOWN it gets carries the real reason.
  auto killer = n.spawn_watch({}, [p]() -> otp::task<void> {
    (void)otp::monitor(p);
    otp::exit(p, otp::exit_reason::kill());
    otp::exit((co_await otp::receive<otp::down_msg>()).reason);
  });
  CHECK(killer.exit.get() == otp::exit_reason::killed());
  CHECK(counted::alive() == 0);
  // The node keeps working after the cancelled completion is dropped.
  auto q = n.spawn_watch({}, []() -> otp::task<void> {
    asio::steady_timer t(otp::this_scheduler().get_executor(), 1ms);
    co_await t.async_wait(otp::use_process);
  });
  CHECK(q.exit.get() == otp::exit_reason::normal());
}

TEST_CASE("a node shut down while processes wait in Asio operations frees everything") {
  counted::reset();
  {
    otp::node n({.schedulers = 2});
    for (unsigned s = 0; s < 2; ++s)
      n.spawn_opt({.scheduler = s}, []() -> otp::task<void> {
        counted local;
        asio::steady_timer t(otp::this_scheduler().get_executor(), 1h);
        co_await t.async_wait(otp::use_process);
      });
    while (counted::constructed.load() < 2)
      std::this_thread::yield();
  }
  CHECK(counted::alive() == 0);
}

TEST_SUITE_END();
