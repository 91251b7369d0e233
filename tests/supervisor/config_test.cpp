// SPDX-License-Identifier: Apache-2.0
// Supervision trees from JSON: what a valid file starts, and one clear error
// (file, JSON path, problem) for each kind of bad input.
#include "supervisor/config.hpp"

#include "behaviours/application.hpp"
#include "otp/logger.hpp"
#include "otp/otp.hpp"
#include "registry/registry.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct shard_config {
  int index = 0;
  std::string dir = "/tmp";
};
void from_json(const otp::json& j, shard_config& c) {
  j.at("index").get_to(c.index);
  if (j.contains("dir"))
    j.at("dir").get_to(c.dir);
}

struct shard {
  shard_config config;
  explicit shard(shard_config c) : config(std::move(c)) {}
  int handle_call(otp::context&, int) { return config.index; }
};

struct plain {
  int handle_call(otp::context&, int x) { return x; }
};

struct conn_config {
  int buffer = 0;
};
void from_json(const otp::json& j, conn_config& c) { j.at("buffer").get_to(c.buffer); }

struct connection {
  conn_config config;
  std::string peer;
  connection(conn_config c, std::string p) : config(c), peer(std::move(p)) {}
  std::string handle_call(otp::context&, int) { return peer + ":" + std::to_string(config.buffer); }
};

// A user's config whose from_json refuses a value with its own exception.
struct port_config {
  int port = 0;
};
void from_json(const otp::json& j, port_config& c) {
  c.port = j.at("port").get<int>();
  if (c.port < 1 || c.port > 65535)
    throw std::invalid_argument("port " + std::to_string(c.port) + " is out of range");
}
// One read with the checked integer readers.
struct limits_config {
  int port = 0;
  std::int64_t limit = 10;
};
void from_json(const otp::json& j, limits_config& c) {
  c.port = otp::integer_at<int>(j, "port", 1, 65535);
  c.limit = otp::integer_or(j, "limit", c.limit, 0);
}
// One that throws something that is not a std::exception at all.
struct odd_config {};
void from_json(const otp::json& j, odd_config&) {
  if (j.contains("boom"))
    throw 42;
}

struct listener {
  port_config config;
  explicit listener(port_config c) : config(c) {}
  int handle_call(otp::context&, int) { return config.port; }
};

otp::start_table make_table() {
  otp::start_table t;
  t.worker<shard, shard_config>("shard");
  t.worker<listener, port_config>("listener");
  t.function("listener_fn", [](port_config c) { return otp::worker<listener>(c); });
  t.function("limited", [](limits_config c) { return otp::worker<listener>(port_config{c.port}); });
  t.function("odd", [](odd_config) { return otp::worker<plain>(); });
  t.dynamic<port_config, std::string>("listener_conn", [](port_config c) {
    return otp::dynamic_worker<connection, std::string>(conn_config{c.port});
  });
  t.dynamic<conn_config, std::string>("refusing_conn", [](conn_config c) -> std::function<otp::task<otp::result<otp::pid>>(std::string)> {
    if (c.buffer > 4096)
      throw std::length_error("buffer too large");
    return otp::dynamic_worker<connection, std::string>(c);
  });
  t.worker<plain>("plain");
  t.function("idle", []() { return otp::worker<plain>(); });
  t.dynamic<conn_config, std::string>("connection", [](conn_config c) {
    return otp::dynamic_worker<connection, std::string>(c);
  });
  return t;
}

const char* valid = R"({
  "application": "kv",
  "description": "a sharded store",
  "env": {"port": 6380},
  "supervisor": {
    "id": "top", "strategy": "one_for_one", "intensity": 3, "period": 5, "name": "kv_sup",
    "children": [
      {"id": "shards", "type": "supervisor", "strategy": "one_for_all", "name": "shards",
       "children": [
         {"id": "s0", "start": "shard", "name": "shard_0", "args": {"index": 0}},
         {"id": "s1", "start": "shard", "name": "shard_1", "args": {"index": 1, "dir": "/var"}, "shutdown": 2000}
       ]},
      {"id": "conns", "type": "supervisor", "strategy": "simple_one_for_one", "name": "conns",
       "max_children": 10, "intensity": 100, "period": 1,
       "template": {"id": "connection", "start": "connection", "restart": "temporary",
                    "shutdown": "brutal_kill", "args": {"buffer": 512}}},
      {"id": "p", "start": "plain", "restart": "transient"},
      {"id": "i", "start": "idle"}
    ]
  }
})";

std::string load_error(const std::string& text) {
  auto t = make_table();
  auto r = otp::parse_app_config(text, t, "app.json");
  REQUIRE(r.has_error());
  CHECK(r.error() == otp::errc::invalid_child_spec);
  return r.error().context;
}

// n arrays, each the only element of the one around it.
std::string nested_arrays(std::size_t n) { return std::string(n, '[') + std::string(n, ']'); }

} // namespace

TEST_SUITE_BEGIN("supervisor/config");

TEST_CASE("a valid file starts its whole tree, with typed args and names") {
  auto t = make_table();
  auto cfg = otp::parse_app_config(valid, t, "app.json");
  REQUIRE(cfg);
  CHECK(cfg.value().application == "kv");
  CHECK(cfg.value().flags.intensity == 3);
  CHECK(cfg.value().children.size() == 4);
  otp::node n({.deterministic = true});
  auto& apps = otp::applications::of(n);
  REQUIRE(apps.load(otp::application_from_config(std::move(cfg).value())));
  std::vector<int> shard_index;
  std::string conn;
  n.spawn([&]() -> otp::task<void> {
    REQUIRE(co_await apps.start("kv"));
    shard_index.push_back((co_await otp::gen_server::call<shard>("shard_0", 0)).value());
    shard_index.push_back((co_await otp::gen_server::call<shard>("shard_1", 0)).value());
    otp::dynamic_supervisor_ref<std::string> conns(otp::whereis("conns").value());
    auto c = co_await otp::dynamic_supervisor::start_child(conns, std::string("peer1"));
    conn = (co_await otp::gen_server::call<connection>(c.value(), 0)).value();
  });
  n.run_until_idle();
  CHECK(shard_index == std::vector<int>{0, 1});
  CHECK(conn == "peer1:512");
  CHECK(otp::registry::of(n).whereis("kv_sup"));
  CHECK(otp::registry::of(n).whereis("shards"));
  CHECK(apps.get_env("kv", "port") == otp::json(6380));
  CHECK_FALSE(apps.get_env("kv", "nope"));
}

TEST_CASE("each kind of bad input is one clear error naming the file, the JSON path and the problem") {
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "a", "start": "plain", "restrat": "temporary"}]}})")
        == "app.json: /supervisor/children/0/restrat: unknown key \"restrat\" (allowed here: id, start, args, name, "
           "restart, shutdown, type, significant)");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"intensity": "3"}})")
        == "app.json: /supervisor/intensity: must be an integer, not a string");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"intensity": -1}})")
        == "app.json: /supervisor/intensity: must be at least 0, not -1");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "a", "start": "plain"}, {"id": "a", "start": "plain"}]}})")
        == "app.json: /supervisor/children/1/id: duplicate id \"a\"");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "a", "start": "nosuch"}]}})")
        == "app.json: /supervisor/children/0/start: unknown start function \"nosuch\" (not registered in the start table)");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "a", "start": "plain", "restart": "forever"}]}})")
        == "app.json: /supervisor/children/0/restart: unknown restart type \"forever\" (expected permanent, transient or "
           "temporary)");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "a", "start": "plain", "shutdown": -5}]}})")
        == "app.json: /supervisor/children/0/shutdown: must not be negative");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"start": "plain"}]}})")
        == "app.json: /supervisor/children/0: missing key \"id\"");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "s", "start": "shard", "args": {"index": "one"}}]}})")
        == "app.json: /supervisor/children/0/args: type must be number, but is string");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "s", "start": "shard"}]}})")
        .starts_with("app.json: /supervisor/children/0/args: key 'index' not found"));
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "p", "start": "plain", "args": {"x": 1}}]}})")
        == "app.json: /supervisor/children/0/args: this start function takes no args");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"strategy": "one_for_some"}})")
        == "app.json: /supervisor/strategy: unknown strategy \"one_for_some\" (expected one_for_one, one_for_all, "
           "rest_for_one or simple_one_for_one)");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "c", "type": "supervisor", "strategy": "simple_one_for_one", "template": {"id": "t", "start": "plain"}}]}})")
        == "app.json: /supervisor/children/0/template/start: \"plain\" is not a dynamic child template (register it with "
           "start_table::dynamic)");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "a", "start": "plain", "restart": "permanent", "significant": true}]}})")
        == "app.json: /supervisor/children/0/significant: a significant child cannot be permanent");
  CHECK(load_error(R"({"supervisor": {}})") == "app.json: /: missing key \"application\"");
  CHECK(load_error(R"({"application": "kv"})") == "app.json: /: missing key \"supervisor\" (the top supervisor)");
  CHECK(load_error("{\"application\": \"kv\",\n \"supervisor\": {\"children\": [}\n}")
          .starts_with("app.json:2:30: JSON syntax error"));
}

TEST_CASE("a number beyond a double's range is an error at its path, not an escaping exception") {
  CHECK(load_error(R"({"application": 1e400})") == "app.json: /application: the number 1e400 is out of range");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"intensity": 1e400}})")
        == "app.json: /supervisor/intensity: the number 1e400 is out of range");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "a", "start": "plain"}, {"id": "b", "start": "shard", "args": {"index": [0, -1e400]}}]}})")
        == "app.json: /supervisor/children/1/args/index/1: the number -1e400 is out of range");
  CHECK(load_error("-1E+999") == "app.json: /: the number -1E+999 is out of range");
  // In range but not an integer: the ordinary type error.
  CHECK(load_error(R"({"application": "kv", "supervisor": {"intensity": 1e30}})")
        == "app.json: /supervisor/intensity: must be an integer, not a number");
  // An integer beyond int64 is not read back as a negative one.
  CHECK(load_error(R"({"application": "kv", "supervisor": {"period": 18446744073709551615}})")
        == "app.json: /supervisor/period: is too large");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "a", "start": "plain", "shutdown": 18446744073709551615}]}})")
        == "app.json: /supervisor/children/0/shutdown: is too large");
}

TEST_CASE("JSON nested deeper than the limit is refused before anything copies or walks it recursively") {
  constexpr std::size_t deep = 100'000;
  const std::string limit = "nested deeper than " + std::to_string(otp::max_config_depth) + " levels";
  // The root is level 1, "env" 2, "deep" 3: the 101st level is deep/0/.../0 (98 indices).
  CHECK(load_error(R"({"application": "kv", "env": {"deep": )" + nested_arrays(deep) + R"(}, "supervisor": {}})")
        == "app.json: /env/deep/0/0/.../0/0/0: " + limit);
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "s", "start": "shard", "args": {"index": 0, "x": )"
                   + nested_arrays(deep) + "}}]}}")
        == "app.json: /supervisor/children/0/args/.../0/0/0: " + limit);
  CHECK(load_error(nested_arrays(deep)) == "app.json: /0/0/0/0/.../0/0/0: " + limit);
  // Nested objects, and supervisors inside supervisors, count the same way.
  std::string objects;
  for (std::size_t i = 0; i < deep; ++i)
    objects += R"({"a":)";
  CHECK(load_error(objects) == "app.json: /a/a/a/a/.../a/a/a: " + limit);
  std::string sups = R"({"application": "kv", "supervisor": )";
  for (int i = 0; i < 60; ++i)
    sups += R"({"id": "s", "type": "supervisor", "children": [)";
  CHECK(load_error(sups) == "app.json: /supervisor/children/0/children/.../children/0/children: " + limit);

  // Up to the limit it loads: the env's innermost array is level 100.
  auto t = make_table();
  auto ok = otp::parse_app_config(R"({"application": "kv", "env": {"deep": )" + nested_arrays(otp::max_config_depth - 2)
                                      + R"(}, "supervisor": {}})",
                                  t, "app.json");
  REQUIRE(ok);
  CHECK(ok.value().env.contains("deep"));

  // A document built in C++ is checked the same way, without recursion.
  otp::json doc = {{"application", "kv"}, {"supervisor", otp::json::object()}, {"env", {{"deep", otp::json::array()}}}};
  otp::json* inner = &doc["env"]["deep"];
  for (std::size_t i = 0; i < deep; ++i)
    inner = &inner->emplace_back(otp::json::array());
  auto r = otp::load_app_config(doc, t, "built");
  REQUIRE(r.has_error());
  CHECK(r.error().context == "built: /env/deep/0/0/.../0/0/0: " + limit);
}

TEST_CASE("an exception from the user's from_json or factory is the loader's error at the args' path") {
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "l", "start": "listener", "args": {"port": 70000}}]}})")
        == "app.json: /supervisor/children/0/args: port 70000 is out of range");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "l", "start": "listener_fn", "args": {"port": 0}}]}})")
        == "app.json: /supervisor/children/0/args: port 0 is out of range");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "c", "type": "supervisor", "strategy": "simple_one_for_one", "template": {"id": "t", "start": "listener_conn", "args": {"port": -1}}}]}})")
        == "app.json: /supervisor/children/0/template/args: port -1 is out of range");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "c", "type": "supervisor", "strategy": "simple_one_for_one", "template": {"id": "t", "start": "refusing_conn", "args": {"buffer": 5000}}}]}})")
        == "app.json: /supervisor/children/0/template/args: buffer too large");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "o", "start": "odd", "args": {"boom": 1}}]}})")
        == "app.json: /supervisor/children/0/args: the conversion threw an exception that is not a std::exception");
  // The same configs load when their values are good.
  auto t = make_table();
  CHECK(otp::parse_app_config(R"({"application": "kv", "supervisor": {"children": [{"id": "l", "start": "listener", "args": {"port": 6380}}, {"id": "o", "start": "odd"}]}})",
                              t, "app.json"));
}

TEST_CASE("integer_at and integer_or return an integer in range, and refuse anything else with its key and range") {
  const auto args = otp::json::parse(R"({"port": 6380, "big": 18446744073709551615, "neg": -5, "half": 2.5,
                                         "huge": 1e30, "whole": 80.0, "text": "80", "small": 255, "bool": true})");
  CHECK(otp::integer_at<int>(args, "port", 1, 65535) == 6380);
  CHECK(otp::integer_at<std::uint64_t>(args, "big") == 18446744073709551615ULL);
  CHECK(otp::integer_at<long>(args, "neg") == -5);
  CHECK(otp::integer_at<std::uint8_t>(args, "small") == 255);
  CHECK(otp::integer_or(args, "absent", 7) == 7);
  CHECK(otp::integer_or(args, "port", 7) == 6380);
  const auto refusal = [&](auto read) -> std::string {
    try {
      read();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "no exception";
  };
  // nlohmann's get<int>() would truncate 2.5, and 1e30 is undefined behaviour.
  CHECK(refusal([&] { return otp::integer_at<int>(args, "huge"); })
        == "huge must be an integer from -2147483648 to 2147483647, not 1e+30");
  CHECK(refusal([&] { return otp::integer_at<int>(args, "half"); })
        == "half must be an integer from -2147483648 to 2147483647, not 2.5");
  CHECK(refusal([&] { return otp::integer_at<int>(args, "whole", 1, 100); }) == "whole must be an integer from 1 to 100, not 80.0");
  CHECK(refusal([&] { return otp::integer_at<int>(args, "text", 1, 100); }) == "text must be an integer from 1 to 100, not \"80\"");
  CHECK(refusal([&] { return otp::integer_at<int>(args, "bool", 0, 1); }) == "bool must be an integer from 0 to 1, not true");
  CHECK(refusal([&] { return otp::integer_at<int>(args, "port", 1, 1024); }) == "port must be an integer from 1 to 1024, not 6380");
  CHECK(refusal([&] { return otp::integer_at<std::int64_t>(args, "big"); })
        == "big must be an integer from -9223372036854775808 to 9223372036854775807, not 18446744073709551615");
  CHECK(refusal([&] { return otp::integer_at<unsigned>(args, "neg"); }) == "neg must be an integer from 0 to 4294967295, not -5");
  CHECK(refusal([&] { return otp::integer_at<std::int8_t>(args, "small"); }) == "small must be an integer from -128 to 127, not 255");
  CHECK(refusal([&] { return otp::integer_at<int>(args, "absent", 0, 9); }) == "absent is missing (an integer from 0 to 9)");
  CHECK(refusal([&] { return otp::integer_or(args, "neg", 1, 0); })
        == "neg must be an integer from 0 to 2147483647, not -5");
  CHECK(refusal([&] { return otp::integer_or(otp::json(5), "port", 1); }) == "args must be an object with port, not 5");
  // Through the loader, the refusal names the child's args.
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "l", "start": "limited", "args": {"port": 400001e30}}]}})")
        == "app.json: /supervisor/children/0/args: port must be an integer from 1 to 65535, not 4.00001e+35");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "l", "start": "limited", "args": {"port": 80, "limit": -1}}]}})")
        == "app.json: /supervisor/children/0/args: limit must be an integer from 0 to 9223372036854775807, not -1");
  CHECK(load_error(R"({"application": "kv", "supervisor": {"children": [{"id": "l", "start": "limited"}]}})")
        == "app.json: /supervisor/children/0/args: port is missing (an integer from 1 to 65535)");
  auto t = make_table();
  CHECK(otp::parse_app_config(R"({"application": "kv", "supervisor": {"children": [{"id": "l", "start": "limited", "args": {"port": 80}}]}})",
                              t, "app.json"));
}

TEST_CASE("a missing file is an error naming it") {
  auto t = make_table();
  auto r = otp::read_app_config("/nonexistent/app.json", t);
  REQUIRE(r.has_error());
  CHECK(r.error().context == "/nonexistent/app.json: cannot read the file");
}

TEST_CASE("registering a start function twice, or without a name, is refused") {
  otp::start_table t;
  t.worker<plain>("plain");
  CHECK_THROWS_AS(t.worker<plain>("plain"), std::invalid_argument);
  CHECK_THROWS_AS(t.worker<plain>(""), std::invalid_argument);
}

TEST_SUITE_END();
