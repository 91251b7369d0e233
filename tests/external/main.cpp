// A program built against the installed otp-cpp (see check.sh): a supervised
// GenServer, called once, then the node shuts down.
#include <behaviours/gen_server.hpp>
#include <otp/otp.hpp>
#include <supervisor/supervisor.hpp>

#include <cstdio>

struct greeter {
  std::string handle_call(otp::context&, int n) { return "hello " + std::to_string(n); }
};

int main() {
  otp::node node({.schedulers = 1});
  auto w = node.spawn_watch({}, []() -> otp::task<void> {
    std::vector<otp::child_spec> children{{.id = "greeter", .start = otp::named_worker<greeter>("greeter")}};
    auto sup = co_await otp::supervisor::start_link({}, children);
    if (!sup)
      otp::exit(otp::exit_reason::error(sup.error().message()));
    auto r = co_await otp::gen_server::call<greeter>("greeter", 42);
    std::printf("%s\n", r.value().c_str());
    otp::exit(otp::exit_reason::shutdown());
  });
  return w.exit.get() == otp::exit_reason::shutdown() ? 0 : 1;
}
