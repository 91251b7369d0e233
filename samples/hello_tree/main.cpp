// SPDX-License-Identifier: Apache-2.0
// samples/hello_tree - the smallest complete program: a supervision tree from
// JSON (app.json), two workers, one of which crashes on a timer. The output
// shows the supervisor's crash report and the restart; after a second the
// program stops itself (or press Ctrl-C).
#include "behaviours/application.hpp"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <stdexcept>
#include <string>

using namespace std::chrono_literals;

namespace {

// Configs: what each worker's "args" in app.json turn into.
struct greeter_config {
  std::string greeting;
};
void from_json(const otp::json& j, greeter_config& c) { j.at("greeting").get_to(c.greeting); }

struct crasher_config {
  int crash_after_ms = 0;
};
void from_json(const otp::json& j, crasher_config& c) { c.crash_after_ms = otp::integer_at<int>(j, "crash_after_ms", 0); }

struct stopper_config {
  int stop_after_ms = 0;
};
void from_json(const otp::json& j, stopper_config& c) { c.stop_after_ms = otp::integer_at<int>(j, "stop_after_ms", 0); }

// A gen_server that says hello when it starts.
struct greeter {
  greeter_config config;
  explicit greeter(greeter_config c) : config(std::move(c)) {}
  void init(otp::context& ctx) { std::printf("greeter %s: %s\n", ctx.self().to_string().c_str(), config.greeting.c_str()); }
};

// Crashes once, on a timer; its restarted self lives on.
std::atomic<int> crasher_starts{0};
struct crash_now {};
struct crasher {
  crasher_config config;
  explicit crasher(crasher_config c) : config(c) {}
  void init(otp::context& ctx) {
    const int n = ++crasher_starts;
    std::printf("crasher %s: started (start #%d)\n", ctx.self().to_string().c_str(), n);
    if (n == 1)
      otp::send_after(std::chrono::milliseconds(config.crash_after_ms), ctx.self(), crash_now{});
  }
  void handle_info(otp::context&, crash_now) { throw std::runtime_error("the timer went off"); }
};

// Ends the demo: the same as pressing Ctrl-C.
struct stop_now {};
struct stopper {
  stopper_config config;
  explicit stopper(stopper_config c) : config(c) {}
  void init(otp::context& ctx) { otp::send_after(std::chrono::milliseconds(config.stop_after_ms), ctx.self(), stop_now{}); }
  void handle_info(otp::context&, stop_now) {
    std::printf("stopper: asking the node to stop (as Ctrl-C would)\n");
    std::raise(SIGINT);
  }
};

} // namespace

int main(int argc, char** argv) {
  otp::start_table table;
  table.worker<greeter, greeter_config>("greeter");
  table.worker<crasher, crasher_config>("crasher");
  table.worker<stopper, stopper_config>("stopper");
  const std::string config = argc > 1 ? argv[1] : HELLO_TREE_CONFIG;
  const int rc = otp::run_application(config, table);
  std::printf("hello_tree: the tree is shut down (exit code %d)\n", rc);
  return rc;
}
