// SPDX-License-Identifier: Apache-2.0
// samples/chat - a line-based TCP chat for nc or telnet. Its tree (app.json):
//
//   chat_sup (one_for_one)
//   ├── rooms (dynamic): one GenServer per room, registered as "room:<name>"
//   ├── sessions (dynamic): one process per connection (plus its socket reader)
//   └── listener: accepts on 127.0.0.1:6667
//
// A room's members are the process group "room:<name>". A client that
// misbehaves (a line over max_line, or /crash) takes down its own session
// only: sessions are temporary children, the others never notice.
//
// usage: chat [--port N]      then: nc 127.0.0.1 6667
#include "behaviours/application.hpp"
#include "otp/otp.hpp"
#include "registry/pg.hpp"
#include "supervisor/dynamic_supervisor.hpp"

#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>

#include <unistd.h>

#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>

using asio::ip::tcp;
namespace gs = otp::gen_server;

namespace {

// Messages.
struct line {
  std::string text;
};
struct closed {};
struct said { // a room sends this to every member
  std::string room, nick, text;
};

// ------------------------------------------------------------------ rooms

// One per room: keeps the last messages and fans new ones out to the group.
struct room {
  std::string name;
  std::deque<std::string> history;
  explicit room(std::string n) : name(std::move(n)) {}

  struct say {
    std::string nick, text;
  };
  struct recent {};

  void handle_cast(otp::context&, say s) {
    history.push_back(s.nick + ": " + s.text);
    if (history.size() > 10)
      history.pop_front();
    otp::process_groups::of(otp::this_scheduler().owner()).send("room:" + name, said{name, s.nick, s.text});
  }
  std::deque<std::string> handle_call(otp::context&, recent) { return history; }
};

otp::task<otp::result<otp::pid>> start_room(std::string name) {
  const gs::start_options opts{.name = "room:" + name, .link = true};
  auto r = co_await gs::start_opt<room>(opts, name);
  if (!r)
    co_return std::move(r).error();
  co_return r.value().pid();
}

// Finds the room, starting it under "rooms" the first time.
otp::task<otp::result<otp::pid>> find_room(std::string name) {
  if (auto p = otp::whereis("room:" + name))
    co_return *p;
  otp::dynamic_supervisor_ref<std::string> rooms(otp::whereis("rooms").value());
  auto r = co_await otp::dynamic_supervisor::start_child(rooms, name);
  if (!r && r.error() == otp::errc::already_started) // another session just started it
    if (auto p = otp::whereis("room:" + name))
      co_return *p;
  co_return r;
}

// --------------------------------------------------------------- sessions

struct session_config {
  std::size_t max_line = 1024;
};
void from_json(const otp::json& j, session_config& c) { c.max_line = otp::integer_or(j, "max_line", c.max_line, std::size_t{1}); }

// Reads lines from the socket and hands them to its session.
otp::task<void> reader(std::shared_ptr<tcp::socket> socket, otp::pid session, std::size_t max_line) {
  std::array<char, 4096> buf{};
  std::string pending;
  for (;;) {
    auto [ec, n] = co_await socket->async_read_some(asio::buffer(buf), otp::use_process_nothrow);
    if (ec)
      break;
    pending.append(buf.data(), n);
    for (std::size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      std::string text = pending.substr(0, nl);
      if (!text.empty() && text.back() == '\r')
        text.pop_back();
      pending.erase(0, nl + 1);
      otp::send(session, line{std::move(text)});
    }
    if (pending.size() > max_line) {
      otp::send(session, line{std::string(pending.size(), 'x')}); // the session refuses it
      break;
    }
  }
  otp::send(session, closed{});
}

otp::task<void> write(tcp::socket& s, std::string text) {
  (void)co_await asio::async_write(s, asio::buffer(text), otp::use_process_nothrow);
}

otp::task<void> session(int fd, session_config config) {
  auto socket = std::make_shared<tcp::socket>(otp::this_scheduler().get_executor(), tcp::v4(), fd);
  {
    // No Nagle: a second line written before the client acknowledged the
    // first would wait for its delayed ACK (tens of milliseconds).
    asio::error_code ignored;
    socket->set_option(tcp::no_delay(true), ignored);
  }
  // The reader awaits the same socket: it must run on this scheduler, whose
  // io_context the socket belongs to (a plain spawn may move it away).
  otp::spawn_opt({.scheduler = otp::this_scheduler().index(), .link = true}, reader, socket, otp::self(),
                 config.max_line);
  std::string nick = "guest" + std::to_string(otp::self().serial());
  std::string current;
  co_await write(*socket, "welcome, " + nick + ". /nick NAME, /join ROOM, /who, /quit\n");
  for (;;) {
    auto msg = co_await otp::receive([](line l) { return std::optional<line>(std::move(l)); },
                                     [](said s) {
                                       return std::optional<line>(line{"[" + s.room + "] " + s.nick + ": " + s.text});
                                     },
                                     [](closed) { return std::optional<line>(); });
    if (!msg)
      co_return; // the client went away
    std::string& text = msg->text;
    if (text.starts_with("[")) { // a message from a room: pass it on
      co_await write(*socket, text + "\n");
      continue;
    }
    if (text.size() > config.max_line) {
      co_await write(*socket, "error: line too long; goodbye\n");
      co_return;
    }
    if (text == "/quit") {
      co_await write(*socket, "bye\n");
      co_return;
    }
    if (text == "/crash") // a misbehaving client: only this session dies
      throw std::runtime_error("session " + nick + " crashed on purpose");
    if (text.starts_with("/nick ")) {
      nick = text.substr(6);
      co_await write(*socket, "you are " + nick + "\n");
    } else if (text.starts_with("/join ")) {
      const std::string name = text.substr(6);
      auto r = co_await find_room(name);
      if (!r) {
        co_await write(*socket, "error: " + r.error().message() + "\n");
        continue;
      }
      auto& groups = otp::process_groups::of(otp::this_scheduler().owner());
      if (!current.empty())
        groups.leave("room:" + current, otp::self());
      (void)groups.join("room:" + name, otp::self());
      current = name;
      auto recent = co_await gs::call<room>(r.value(), room::recent{});
      std::string intro = "joined " + name + "\n";
      if (recent)
        for (const auto& h : recent.value())
          intro += "  " + h + "\n";
      co_await write(*socket, intro);
    } else if (text == "/who") {
      const auto members = otp::pg::members("room:" + current);
      // g++ 12: no ?: of class type inside co_await (docs/design.md): build it first.
      const std::string where = current.empty() ? "no room" : current;
      co_await write(*socket, std::to_string(members.size()) + " in " + where + "\n");
    } else if (current.empty()) {
      co_await write(*socket, "join a room first: /join NAME\n");
    } else if (auto p = otp::whereis("room:" + current)) {
      gs::cast<room>(*p, room::say{nick, text});
    }
  }
}

otp::task<otp::result<otp::pid>> start_session(session_config c, int fd) {
  // A plain spawn: the session moves to an idle scheduler before it first
  // runs, and stays where it makes its socket.
  co_return otp::spawn_opt({.link = true}, session, fd, c).pid;
}

// --------------------------------------------------------------- listener

struct listener_config {
  int port = 6667;
};
void from_json(const otp::json& j, listener_config& c) { c.port = j.value("port", c.port); }

otp::task<void> listener(listener_config c) {
  tcp::acceptor a(otp::this_scheduler().get_executor());
  const tcp::endpoint at(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(c.port));
  a.open(at.protocol());
  a.set_option(tcp::acceptor::reuse_address(true));
  a.bind(at);
  a.listen();
  std::printf("chat: listening on 127.0.0.1:%d; try: nc 127.0.0.1 %d (Ctrl-C stops)\n", c.port, c.port);
  std::fflush(stdout);
  for (;;) {
    tcp::socket s = co_await a.async_accept(otp::use_process);
    const int fd = s.release();
    otp::dynamic_supervisor_ref<int> sessions(otp::whereis("sessions").value());
    if (!co_await otp::dynamic_supervisor::start_child(sessions, fd))
      ::close(fd);
  }
}

} // namespace

int main(int argc, char** argv) {
  otp::start_table table;
  table.dynamic<otp::json, std::string>("room", [](otp::json) {
    return std::function<otp::task<otp::result<otp::pid>>(std::string)>(start_room);
  });
  table.dynamic<session_config, int>("session", [](session_config c) {
    return std::function<otp::task<otp::result<otp::pid>>(int)>([c](int fd) { return start_session(c, fd); });
  });
  table.function("listener", [](listener_config c) { return otp::process_worker(listener, c); });

  std::ifstream in(CHAT_CONFIG);
  otp::json doc = otp::json::parse(in);
  if (argc == 3 && std::string(argv[1]) == "--port") {
    char* end = nullptr;
    errno = 0;
    const long port = std::strtol(argv[2], &end, 10);
    if (!std::isdigit(static_cast<unsigned char>(argv[2][0])) || *end != '\0' || errno == ERANGE || port < 1
        || port > 65535) {
      std::fprintf(stderr, "chat: --port wants a whole number from 1 to 65535, not '%s'\n", argv[2]);
      return 2;
    }
    for (auto& child : doc["supervisor"]["children"])
      if (child["id"] == "listener")
        child["args"]["port"] = port;
  } else if (argc != 1) {
    std::fprintf(stderr, "usage: chat [--port N]\n");
    return 2;
  }
  auto cfg = otp::load_app_config(doc, table, CHAT_CONFIG);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error().context.c_str());
    return 1;
  }
  return otp::run_application(std::move(cfg).value());
}
