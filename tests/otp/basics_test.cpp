// SPDX-License-Identifier: Apache-2.0
#include "otp/pid.hpp"
#include "otp/exit_reason.hpp"
#include "otp/error.hpp"

#include <doctest/doctest.h>

#include <sstream>
#include <stdexcept>
#include <type_traits>
#include <unordered_set>

static_assert(std::is_trivially_copyable_v<otp::pid>);
static_assert(sizeof(otp::pid) == 16);
static_assert(std::is_nothrow_copy_constructible_v<otp::exit_reason>);

TEST_SUITE_BEGIN("otp/basics");

TEST_CASE("a default pid names no process and prints like Erlang's") {
  otp::pid p;
  CHECK_FALSE(p);
  CHECK(p.to_string() == "<0.0.0>");
  std::ostringstream os;
  os << p;
  CHECK(os.str() == "<0.0.0>");
  std::unordered_set<otp::pid> set{p};
  CHECK(set.contains(otp::pid{}));
}

TEST_CASE("exit reasons print as Erlang terms and compare by value") {
  CHECK(otp::exit_reason::normal().to_string() == "normal");
  CHECK(otp::exit_reason().is_normal());
  CHECK(otp::exit_reason::shutdown().to_string() == "shutdown");
  CHECK(otp::exit_reason::shutdown("db_gone").to_string() == "{shutdown,db_gone}");
  CHECK(otp::exit_reason::shutdown("x").is_shutdown());
  CHECK(otp::exit_reason::shutdown("x").is_normal_or_shutdown());
  CHECK_FALSE(otp::exit_reason::killed().is_normal_or_shutdown());
  CHECK(otp::exit_reason::killed().to_string() == "killed");
  CHECK(otp::exit_reason::kill().to_string() == "kill");
  CHECK(otp::exit_reason::noproc().to_string() == "noproc");
  CHECK(otp::exit_reason::error("badarg").to_string() == "badarg");
  CHECK(otp::exit_reason::error("a") == otp::exit_reason::error("a"));
  CHECK_FALSE(otp::exit_reason::error("a") == otp::exit_reason::error("b"));
  CHECK_FALSE(otp::exit_reason::shutdown() == otp::exit_reason::shutdown("x"));
}

TEST_CASE("an escaped exception becomes a reason with its dynamic type and message") {
  struct my_error : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  std::exception_ptr e;
  try {
    throw my_error("disk full");
  } catch (...) {
    e = std::current_exception();
  }
  auto r = otp::exit_reason::from_exception(e);
  CHECK(r.which() == otp::exit_reason::kind::exception);
  CHECK(r.exception_type().find("my_error") != std::string_view::npos);
  CHECK(r.detail() == "disk full");
  CHECK(r.to_string().find("\"disk full\"") != std::string::npos);

  try {
    throw otp::exit_exception(otp::exit_reason::shutdown("bye"));
  } catch (...) {
    e = std::current_exception();
  }
  CHECK(otp::exit_reason::from_exception(e) == otp::exit_reason::shutdown("bye"));

  try {
    throw 42;
  } catch (...) {
    e = std::current_exception();
  }
  CHECK(otp::exit_reason::from_exception(e).exception_type() == "int");
}

TEST_CASE("errors carry a code and a context") {
  otp::error e{otp::errc::noproc, "call to <0.1.2>"};
  CHECK(e == otp::errc::noproc);
  CHECK(e.message() == "no such process: call to <0.1.2>");
  otp::result<int> r = otp::error{otp::errc::timeout};
  REQUIRE(r.has_error());
  CHECK(r.error() == otp::errc::timeout);
  CHECK_THROWS_AS((void)r.value(), std::system_error);
}

TEST_SUITE_END();
