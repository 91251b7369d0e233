// SPDX-License-Identifier: Apache-2.0
// libFuzzer harness for the JSON application loader (supervisor/config.cpp):
// whatever the bytes, parse_app_config returns a config or one error of the
// form "<source>:..." (syntax) or "<source>: <json path>: <problem>", and
// never throws, aborts or overflows the stack. Built and run by `make fuzz`.
#include "behaviours/application.hpp"
#include "supervisor/config.hpp"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

// Args of every shape the start table accepts: a struct with nested and
// optional fields, one whose from_json throws its own exception, and one
// that throws something that is not a std::exception.
struct shard_config {
  int index = 0;
  std::string dir;
  std::vector<std::string> tags;
};
void from_json(const otp::json& j, shard_config& c) {
  c.index = otp::integer_at<int>(j, "index");
  if (j.contains("dir"))
    j.at("dir").get_to(c.dir);
  if (j.contains("tags"))
    j.at("tags").get_to(c.tags);
}

struct port_config {
  int port = 0;
};
void from_json(const otp::json& j, port_config& c) {
  // Checked: nlohmann's get<int>() of 1e30 is undefined behaviour (found
  // here by the fuzzer, as a user's from_json written the plain way).
  c.port = otp::integer_at<int>(j, "port", 1, 65535);
}

struct odd_config {};
void from_json(const otp::json& j, odd_config&) {
  if (j.contains("boom"))
    throw 42;
}

struct shard {
  explicit shard(shard_config) {}
  int handle_call(otp::context&, int x) { return x; }
};
struct plain {
  int handle_call(otp::context&, int x) { return x; }
};
struct listener {
  explicit listener(port_config) {}
  int handle_call(otp::context&, int x) { return x; }
};
struct conn {
  conn(port_config, std::string) {}
  int handle_call(otp::context&, int x) { return x; }
};

const otp::start_table& table() {
  static const otp::start_table t = [] {
    otp::start_table s;
    s.worker<shard, shard_config>("shard");
    s.worker<plain>("plain");
    s.worker<listener, port_config>("listener");
    s.function("idle", []() { return otp::worker<plain>(); });
    s.function("odd", [](odd_config) { return otp::worker<plain>(); });
    s.function("refuses", [](port_config c) -> otp::start_fn {
      if (c.port == 1)
        throw std::runtime_error("refused");
      return otp::worker<plain>();
    });
    s.dynamic<port_config, std::string>("connection",
                                        [](port_config c) { return otp::dynamic_worker<conn, std::string>(c); });
    return s;
  }();
  return t;
}

[[noreturn]] void bad(const std::string& why) {
  std::fprintf(stderr, "config_fuzz: %s\n", why.c_str());
  std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  // An exception escaping here is a finding: libFuzzer reports it as a crash.
  auto r = otp::parse_app_config(text, table(), "fuzz.json");
  if (r) {
    // A loaded config becomes an application spec (copies env and children).
    auto spec = otp::application_from_config(std::move(r).value());
    if (spec.name.empty() || !spec.start)
      bad("a loaded application has no name or no start function");
    return 0;
  }
  const std::string& context = r.error().context;
  if (!(r.error() == otp::errc::invalid_child_spec))
    bad("error of another kind: " + context);
  if (!context.starts_with("fuzz.json:"))
    bad("error without the source name: " + context);
  return 0;
}
