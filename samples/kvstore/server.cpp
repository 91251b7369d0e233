// SPDX-License-Identifier: Apache-2.0
#include "server.hpp"

#include "resp.hpp"
#include "shard.hpp"
#include "supervisor/dynamic_supervisor.hpp"

#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>

#include <cerrno>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string_view>
#include <system_error>

namespace kv {

using asio::ip::tcp;
namespace gs = otp::gen_server;

namespace {

int shard_of(const std::string& key) {
  const int n = std::max(1, stats().shards.load());
  return static_cast<int>(std::hash<std::string>{}(key) % static_cast<std::size_t>(n));
}

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
    .count();
}

// A shard that cannot answer (it is restarting): the client may retry.
void unavailable(std::string& out, int shard, const otp::error& e) {
  error(out, "TRYAGAIN shard " + std::to_string(shard) + " is unavailable: " + e.message());
}

void wrong_arity(std::string& out, const std::string& cmd) {
  error(out, "ERR wrong number of arguments for '" + lower(cmd) + "' command");
}

// Every command: reads argv, appends its reply to `out`; false closes the connection.
// (g++ 12: requests are bound to locals, never built inside co_await.)
otp::task<bool> execute(std::vector<std::string> argv, std::string& out, const connection_config& config) {
  ++stats().commands;
  std::string cmd = argv[0];
  for (auto& c : cmd)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  const std::size_t n = argv.size();

  if (cmd == "PING") {
    if (n > 2)
      wrong_arity(out, cmd);
    else if (n == 2)
      bulk(out, argv[1]);
    else
      simple(out, "PONG");
  } else if (cmd == "ECHO") {
    if (n != 2)
      wrong_arity(out, cmd);
    else
      bulk(out, argv[1]);
  } else if (cmd == "QUIT") {
    simple(out, "OK");
    co_return false;
  } else if (cmd == "GET") {
    if (n != 2) {
      wrong_arity(out, cmd);
      co_return true;
    }
    const int s = shard_of(argv[1]);
    shard::get req{argv[1]};
    auto r = co_await gs::call<shard>(shard_name(s), std::move(req));
    if (!r)
      unavailable(out, s, r.error());
    else if (r.value())
      bulk(out, *r.value());
    else
      null_bulk(out);
  } else if (cmd == "SET") {
    if (n < 3) {
      wrong_arity(out, cmd);
      co_return true;
    }
    // As Redis 7.0: EX and PX exclude each other, a repeated one wins, and
    // only the final value is checked; a time whose absolute milliseconds do
    // not fit an int64 is refused (it was a signed overflow).
    std::optional<std::string> unit, value;
    for (std::size_t i = 3; i < n; i += 2) {
      const std::string opt = lower(argv[i]);
      if ((opt != "ex" && opt != "px") || i + 1 >= n || (unit && *unit != opt)) {
        error(out, "ERR syntax error");
        co_return true;
      }
      unit = opt;
      value = argv[i + 1];
    }
    std::optional<std::int64_t> expire_at;
    if (unit) {
      const auto v = to_int64(*value);
      if (!v) {
        error(out, "ERR value is not an integer or out of range");
        co_return true;
      }
      std::int64_t ms = *v;
      std::int64_t at = 0;
      if (ms <= 0 || (*unit == "ex" && __builtin_mul_overflow(ms, 1000, &ms))
          || __builtin_add_overflow(ms, now_ms(), &at)) {
        error(out, "ERR invalid expire time in 'set' command");
        co_return true;
      }
      expire_at = at;
    }
    const int s = shard_of(argv[1]);
    shard::set req{argv[1], argv[2], expire_at};
    auto r = co_await gs::call<shard>(shard_name(s), std::move(req));
    if (!r)
      unavailable(out, s, r.error());
    else
      simple(out, "OK");
  } else if (cmd == "DEL" || cmd == "EXISTS") {
    if (n < 2) {
      wrong_arity(out, cmd);
      co_return true;
    }
    std::int64_t count = 0;
    for (std::size_t i = 1; i < n; ++i) {
      const int s = shard_of(argv[i]);
      otp::result<std::int64_t> r = 0;
      if (cmd == "DEL") {
        shard::del req{argv[i]};
        r = co_await gs::call<shard>(shard_name(s), std::move(req));
      } else {
        shard::exists req{argv[i]};
        r = co_await gs::call<shard>(shard_name(s), std::move(req));
      }
      if (!r) {
        unavailable(out, s, r.error());
        co_return true;
      }
      count += r.value();
    }
    integer(out, count);
  } else if (cmd == "INCR") {
    if (n != 2) {
      wrong_arity(out, cmd);
      co_return true;
    }
    const int s = shard_of(argv[1]);
    shard::incr req{argv[1]};
    auto r = co_await gs::call<shard>(shard_name(s), std::move(req));
    if (r)
      integer(out, r.value());
    else if (r.error() == otp::errc::invalid_argument)
      error(out, r.error().context);
    else
      unavailable(out, s, r.error());
  } else if (cmd == "MGET") {
    if (n < 2) {
      wrong_arity(out, cmd);
      co_return true;
    }
    std::string items;
    for (std::size_t i = 1; i < n; ++i) {
      const int s = shard_of(argv[i]);
      shard::get req{argv[i]};
      auto r = co_await gs::call<shard>(shard_name(s), std::move(req));
      if (!r) {
        unavailable(out, s, r.error());
        co_return true;
      }
      if (r.value())
        bulk(items, *r.value());
      else
        null_bulk(items);
    }
    array_header(out, n - 1);
    out += items;
  } else if (cmd == "MSET") {
    if (n < 3 || n % 2 == 0) {
      wrong_arity(out, cmd);
      co_return true;
    }
    for (std::size_t i = 1; i + 1 < n; i += 2) {
      const int s = shard_of(argv[i]);
      shard::set req{argv[i], argv[i + 1], std::nullopt};
      auto r = co_await gs::call<shard>(shard_name(s), std::move(req));
      if (!r) {
        unavailable(out, s, r.error());
        co_return true;
      }
    }
    simple(out, "OK");
  } else if (cmd == "KEYS" || cmd == "DBSIZE") {
    if ((cmd == "KEYS" && n != 2) || (cmd == "DBSIZE" && n != 1)) {
      wrong_arity(out, cmd);
      co_return true;
    }
    std::vector<std::string> all;
    std::int64_t size = 0;
    for (int s = 0; s < stats().shards.load(); ++s) {
      if (cmd == "KEYS") {
        shard::keys req{argv[1]};
        auto r = co_await gs::call<shard>(shard_name(s), std::move(req));
        if (!r) {
          unavailable(out, s, r.error());
          co_return true;
        }
        all.insert(all.end(), r.value().begin(), r.value().end());
      } else {
        auto r = co_await gs::call<shard>(shard_name(s), shard::dbsize{});
        if (!r) {
          unavailable(out, s, r.error());
          co_return true;
        }
        size += r.value();
      }
    }
    if (cmd == "DBSIZE") {
      integer(out, size);
    } else {
      array_header(out, all.size());
      for (const auto& k : all)
        bulk(out, k);
    }
  } else if (cmd == "INFO") {
    std::string text = "# Server\r\nredis_version:7.0.0\r\nserver:otp-cpp kvstore sample\r\n"
                       "# Clients\r\nconnected_clients:"
                       + std::to_string(stats().connections.load()) + "\r\n# Stats\r\ntotal_commands_processed:"
                       + std::to_string(stats().commands.load()) + "\r\n# Persistence\r\naof_fsyncs:"
                       + std::to_string(stats().log_syncs.load()) + "\r\naof_rewrite_in_progress:"
                       + (stats().rewrites_running.load() > 0 ? "1" : "0") + "\r\naof_rewrites:"
                       + std::to_string(stats().rewrites.load()) + "\r\n# Shards\r\n";
    std::int64_t total = 0;
    for (int s = 0; s < stats().shards.load(); ++s) {
      auto r = co_await gs::call<shard>(shard_name(s), shard::dbsize{});
      const int starts = stats().shard_starts.at(static_cast<std::size_t>(s)).load();
      text += "shard_" + std::to_string(s) + ":keys=" + (r ? std::to_string(r.value()) : std::string("unavailable"))
              + ",restarts=" + std::to_string(std::max(0, starts - 1)) + "\r\n";
      total += r ? r.value() : 0;
    }
    text += "# Keyspace\r\ndb0:keys=" + std::to_string(total) + ",expires=0,avg_ttl=0\r\n";
    bulk(out, text);
  } else if (cmd == "CONFIG" && n == 3 && lower(argv[1]) == "get") {
    // redis-benchmark asks for these at start.
    const std::string key = lower(argv[2]);
    if (key == "save" || key == "appendonly") {
      array_header(out, 2);
      bulk(out, key);
      bulk(out, key == "appendonly" ? "yes" : "");
    } else {
      array_header(out, 0);
    }
  } else if (cmd == "DEBUG" && n == 3 && lower(argv[1]) == "crash" && lower(argv[2]) == "connection" && config.admin) {
    // This connection's process crashes; its client sees the socket close.
    throw std::runtime_error("connection crashed on purpose (DEBUG CRASH CONNECTION)");
  } else if (cmd == "DEBUG" && n == 3 && lower(argv[1]) == "crash" && config.admin) {
    auto s = to_int64(argv[2]);
    if (!s || *s < 0 || *s >= stats().shards.load()) {
      error(out, "ERR no such shard");
    } else {
      gs::cast<shard>(shard_name(static_cast<int>(*s)), shard::crash{});
      simple(out, "OK");
    }
  } else {
    // Redis's text: the name and the arguments are cut at a NUL (C strings)
    // and at 128 bytes, and error() turns CR and LF into spaces.
    auto c_string = [](const std::string& s) { return std::string_view(s.c_str()); };
    std::string args;
    for (std::size_t i = 1; i < n && args.size() < 128; ++i) {
      const std::size_t room = 128 - args.size();
      args.append("'").append(c_string(argv[i]).substr(0, room)).append("' ");
    }
    error(out, "ERR unknown command '" + std::string(c_string(argv[0]).substr(0, 128))
                 + "', with args beginning with: " + args);
  }
  co_return true;
}

} // namespace

void from_json(const otp::json& j, connection_config& c) {
  c.admin = j.value("admin", c.admin);
  c.max_query_buffer = j.value("max_query_buffer", c.max_query_buffer);
}

void from_json(const otp::json& j, acceptor_config& c) {
  c.host = j.value("host", c.host);
  c.port = j.value("port", c.port);
}

otp::task<void> connection(int fd, connection_config config) {
  tcp::socket socket(otp::this_scheduler().get_executor(), tcp::v4(), fd);
  ++stats().connections;
  struct gone {
    ~gone() { --stats().connections; }
  } count_guard;
  request_parser parser;
  std::array<char, 16 * 1024> buf{};
  std::vector<std::string> argv;
  std::string out, message;
  for (;;) {
    auto [ec, got] = co_await socket.async_read_some(asio::buffer(buf), otp::use_process_nothrow);
    if (ec)
      co_return; // the client went away (mid-command or not): nothing to answer
    parser.feed(buf.data(), got);
    bool open = true;
    for (;;) {
      const auto st = parser.next(argv, message);
      if (st == request_parser::status::need_more)
        break;
      if (st == request_parser::status::error) {
        error(out, message); // as Redis: reply, then close
        open = false;
        break;
      }
      if (!co_await execute(std::move(argv), out, config)) {
        open = false;
        break;
      }
    }
    // As Redis's client-query-buffer-limit: a client whose unfinished input
    // passes the limit is closed (after the replies it has earned).
    if (open && parser.buffered() > config.max_query_buffer) {
      std::fprintf(stderr, "kvstore: closing a client whose query buffer passed %zu bytes (--max-query-buffer)\n",
                   config.max_query_buffer);
      open = false;
    }
    // One write per read: pipelined commands get their replies together.
    if (!out.empty()) {
      auto [wec, written] = co_await asio::async_write(socket, asio::buffer(out), otp::use_process_nothrow);
      (void)written;
      if (wec)
        co_return;
      out.clear();
    }
    if (!open)
      co_return;
  }
}

namespace {

// The dynamic supervisor of connections, looked up once. It starts before
// the acceptor, and rest_for_one restarts the acceptor whenever it
// restarts, so one lookup holds for the acceptor's life. The loader gives
// no typed ref, so the type is checked here, by one call: a mismatch with
// main.cpp's template fails the acceptor's start with bad_request, instead
// of failing every client later.
otp::task<connections_ref> find_connections() {
  const auto where = otp::whereis("connections");
  if (!where)
    throw std::runtime_error("acceptor: no dynamic supervisor is registered as 'connections'");
  const connections_ref conns(*where);
  auto counted = co_await otp::dynamic_supervisor::count_children(conns);
  if (!counted)
    throw std::runtime_error("acceptor: 'connections' refused: " + counted.error().message());
  co_return conns;
}

} // namespace

namespace {

constexpr std::string_view too_many_clients = "-ERR max number of clients reached\r\n";

// Refuses a client as Redis does: the error, then close. What the client
// already sent (up to 64 KB: a flood must not hold the acceptor) is read
// first, so that the close does not turn into a reset that could discard
// the error before the client reads it.
void refuse(int fd) {
  std::array<char, 4096> drain{};
  for (int i = 0; i < 16 && ::recv(fd, drain.data(), drain.size(), MSG_DONTWAIT) > 0; ++i) {
  }
  (void)!::send(fd, too_many_clients.data(), too_many_clients.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::close(fd);
}

// A descriptor held in reserve: out of descriptors (EMFILE), the acceptor
// closes it to accept one waiting client, refuses it, and takes it back
// (the classic trick), so that even then a client gets an answer.
struct spare_fd {
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  spare_fd() = default;
  spare_fd(const spare_fd&) = delete;
  spare_fd& operator=(const spare_fd&) = delete;
  ~spare_fd() {
    if (fd >= 0)
      ::close(fd);
  }
  // Refuses one waiting client with the spare descriptor; false if none could be.
  bool refuse_one(int listener) {
    if (fd < 0)
      fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
      return false;
    ::close(fd);
    const int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0)
      refuse(c);
    fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    return c >= 0;
  }
};

// Errors of accept that say the listening socket itself is broken; the
// others (out of descriptors or memory, a client that reset before being
// accepted, network errors) pass, and the acceptor keeps serving.
// (accept(2): TCP's pending network errors, EOPNOTSUPP among them, are
// to be retried like EAGAIN.)
bool fatal(const std::error_code& ec) {
  return ec == asio::error::bad_descriptor || ec == asio::error::not_socket || ec == asio::error::invalid_argument
         || (ec.category() == asio::error::get_system_category() && ec.value() == EFAULT);
}

} // namespace

otp::task<void> acceptor(acceptor_config config) {
  const connections_ref conns = co_await find_connections();
  tcp::acceptor a(otp::this_scheduler().get_executor());
  const tcp::endpoint at(asio::ip::make_address(config.host), static_cast<unsigned short>(config.port));
  a.open(at.protocol());
  a.set_option(tcp::acceptor::reuse_address(true));
  a.bind(at);
  a.listen();
  a.non_blocking(true); // spare_fd::refuse_one accepts directly
  spare_fd spare;
  std::printf("kvstore: listening on %s:%d with %d shards; try: redis-cli -p %d (Ctrl-C stops the tree)\n",
              config.host.c_str(), config.port, stats().shards.load(), config.port);
  std::fflush(stdout);
  auto backoff = std::chrono::milliseconds(0);
  for (;;) {
    auto [ec, s] = co_await a.async_accept(otp::use_process_nothrow);
    if (ec) {
      // A resource error is no crash: restarting would not free a
      // descriptor, and a burst of them would take the whole tree down.
      if (fatal(ec))
        throw std::system_error(ec, "kvstore acceptor: accept");
      const bool no_fds = ec == asio::error::no_descriptors
                          || (ec.category() == asio::error::get_system_category() && ec.value() == ENFILE);
      if (no_fds && spare.refuse_one(a.native_handle()))
        continue;
      backoff = std::clamp(backoff * 2, std::chrono::milliseconds(1), std::chrono::milliseconds(100));
      co_await otp::sleep_for(backoff);
      continue;
    }
    backoff = std::chrono::milliseconds(0);
    const int fd = s.release();
    auto started = co_await otp::dynamic_supervisor::start_child(conns, fd);
    if (!started) {
      if (started.error() == otp::errc::invalid_argument)
        refuse(fd); // max_children
      else
        ::close(fd); // the start failed: nothing to tell the client
    }
  }
}

} // namespace kv
