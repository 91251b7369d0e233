// examples/starter - a minimal service on the installed library: a GenServer,
// a supervisor from a JSON tree (app.json), and a socket that speaks a line
// protocol ("incr" -> the counter's new value). With "self_test": true it
// connects to itself, checks three answers and stops; with false it serves
// until Ctrl-C (try: nc 127.0.0.1 PORT, then type incr).
#include "behaviours/application.hpp"
#include "behaviours/gen_server.hpp"
#include "otp/otp.hpp"

#include <asio/connect.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/streambuf.hpp>
#include <asio/write.hpp>

#include <csignal>
#include <cstdio>
#include <istream>
#include <string>

namespace gs = otp::gen_server;
using asio::ip::tcp;

// The counter: a GenServer registered as "counter" by app.json.
struct counter_config {
  long start_at = 0;
};
void from_json(const otp::json& j, counter_config& c) { c.start_at = otp::integer_or(j, "start_at", c.start_at); }

struct counter {
  struct incr {};
  long value;
  explicit counter(counter_config c) : value(c.start_at) {}
  long handle_call(otp::context&, incr) { return ++value; }
};

// One connection: reads lines, answers each "incr" with the counter's value.
otp::task<void> connection(tcp::socket socket) {
  asio::streambuf in;
  for (;;) {
    auto [ec, n] = co_await asio::async_read_until(socket, in, '\n', otp::use_process_nothrow);
    if (ec)
      co_return; // the client went away
    std::string line;
    std::getline(std::istream(&in), line);
    std::string reply = "unknown command\n";
    if (line == "incr") {
      auto v = co_await gs::call<counter>(otp::server_name("counter"), counter::incr{});
      reply = v ? std::to_string(v.value()) + "\n" : "error: " + v.error().message() + "\n";
    }
    co_await asio::async_write(socket, asio::buffer(reply), otp::use_process);
  }
}

// The self test: three "incr" on one connection, then Ctrl-C's stop.
otp::task<void> self_test(tcp::endpoint at) {
  tcp::socket s(otp::this_scheduler().get_executor());
  co_await s.async_connect(at, otp::use_process);
  asio::streambuf in;
  std::string got;
  for (int i = 0; i < 3; ++i) {
    co_await asio::async_write(s, asio::buffer(std::string("incr\n")), otp::use_process);
    co_await asio::async_read_until(s, in, '\n', otp::use_process);
    std::getline(std::istream(&in), got);
  }
  std::printf("starter: the counter says %s\n", got.c_str());
  std::fflush(stdout);
  std::raise(SIGINT); // run_application stops the tree and returns
}

struct listener_config {
  std::string host = "127.0.0.1";
  int port = 0;
  bool self_test = false;
};
void from_json(const otp::json& j, listener_config& c) {
  c.host = j.value("host", c.host);
  c.port = otp::integer_or(j, "port", c.port, 0, 65535);
  c.self_test = j.value("self_test", c.self_test);
}

// Accepts connections; each gets a process of its own (spawned plainly:
// the runtime places it, and it stays where its socket is).
otp::task<void> listener(listener_config c) {
  tcp::acceptor a(otp::this_scheduler().get_executor(),
                  tcp::endpoint(asio::ip::make_address(c.host), static_cast<unsigned short>(c.port)));
  const tcp::endpoint at = a.local_endpoint();
  std::printf("starter: listening on %s:%u\n", at.address().to_string().c_str(), at.port());
  std::fflush(stdout);
  if (c.self_test)
    otp::spawn_opt({.link = true}, self_test, at);
  for (;;) {
    tcp::socket s = co_await a.async_accept(otp::use_process);
    // The socket belongs to this scheduler's io_context: hand the new
    // process its descriptor, and let it make its own socket.
    otp::spawn([](int fd) -> otp::task<void> {
      co_await connection(tcp::socket(otp::this_scheduler().get_executor(), tcp::v4(), fd));
    }, s.release());
  }
}

int main(int argc, char** argv) {
  otp::start_table table;
  table.worker<counter, counter_config>("counter");
  table.function("listener", [](listener_config c) { return otp::process_worker(listener, c); });
  return otp::run_application(argc > 1 ? argv[1] : "app.json", table); // until SIGINT/SIGTERM
}
