// SPDX-License-Identifier: Apache-2.0
// samples/kvstore - a fault-tolerant key-value server that real Redis clients
// (redis-cli, redis-benchmark) talk to. Its whole tree comes from app.json:
//
//   kv_sup (rest_for_one)
//   ├── shards (one_for_one): shard_0 .. shard_N-1, GenServers with a log each
//   ├── connections (dynamic): one process per client
//   └── acceptor: accepts on 127.0.0.1:6380, starts a connection per client
//
// The data directory defaults to $XDG_STATE_HOME/otp-kvstore, else
// ~/.local/state/otp-kvstore (per user).
//
// usage: kvstore [--config app.json] [--port N] [--shards N] [--data DIR]
//                [--appendfsync always|everysec|no] [--repair-log] [--admin] [--schedulers N]
//                [--max-clients N] [--max-query-buffer BYTES] [--maxmemory BYTES]
//                [--maxmemory-policy noeviction|allkeys-lru|volatile-lru|allkeys-random|volatile-random|volatile-ttl]
#include "resp.hpp"
#include "server.hpp"
#include "shard.hpp"

#include "behaviours/application.hpp"

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <thread>

#include <sys/resource.h>

namespace {

// Where the logs go without --data or a "data_dir" in the file: the user's
// own state directory (XDG), so that two users of one machine never share
// a store; the working directory if there is no home.
std::string default_data_dir() {
  if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && state[0] == '/')
    return std::string(state) + "/otp-kvstore";
  if (const char* home = std::getenv("HOME"); home != nullptr && home[0] != '\0')
    return std::string(home) + "/.local/state/otp-kvstore";
  return "otp-kvstore-data";
}

struct shards_config {
  int count = 4;
  std::string data_dir = default_data_dir();
  std::string appendfsync = "everysec";
  bool repair_log = false;
  std::int64_t aof_rewrite_min_size = 64LL * 1024 * 1024;
  std::uint64_t maxmemory = 0;
  kv::eviction_policy policy = kv::eviction_policy::noeviction;
  std::int64_t aof_rewrite_chunk = 1024;
  int intensity = 100;
  int period = 1;
};
void from_json(const otp::json& j, shards_config& c) {
  c.count = otp::integer_or(j, "count", c.count);
  c.data_dir = j.value("data_dir", c.data_dir);
  c.appendfsync = j.value("appendfsync", c.appendfsync);
  c.repair_log = j.value("repair_log", c.repair_log);
  c.aof_rewrite_min_size = otp::integer_or(j, "aof_rewrite_min_size", c.aof_rewrite_min_size, 0);
  // A number of bytes, or a string with Redis's units ("100mb").
  if (const auto m = j.find("maxmemory"); m != j.end()) {
    const auto v = m->is_string() ? kv::parse_memory(m->get<std::string>())
                   : m->is_number_unsigned() ? std::optional<std::uint64_t>(m->get<std::uint64_t>())
                                             : std::nullopt;
    if (!v)
      throw std::invalid_argument("shards: maxmemory must be a number of bytes, or one with a unit as in \"100mb\", "
                                  "not " + m->dump());
    c.maxmemory = *v;
  }
  if (const auto p = j.find("maxmemory_policy"); p != j.end()) {
    const auto v = p->is_string() ? kv::parse_policy(p->get<std::string>()) : std::nullopt;
    if (!v)
      throw std::invalid_argument("shards: maxmemory_policy must be one of noeviction, allkeys-lru, volatile-lru, "
                                  "allkeys-random, volatile-random, volatile-ttl, not " + p->dump());
    c.policy = *v;
  }
  c.aof_rewrite_chunk = otp::integer_or(j, "aof_rewrite_chunk", c.aof_rewrite_chunk, 1);
  c.intensity = otp::integer_or(j, "intensity", c.intensity, 0);
  c.period = otp::integer_or(j, "period", c.period, 1);
}

// The shards supervisor: its children depend on the shard count, so it is
// built by a start function rather than listed in the file.
otp::start_fn make_shards(shards_config c) {
  if (c.count < 1 || c.count > kv::server_stats::max_shards)
    throw std::invalid_argument("shards: count must be 1 to 64");
  kv::stats().shards = c.count;
  kv::stats().maxmemory = c.maxmemory;
  kv::stats().policy = c.policy;
  const std::uint64_t share = kv::maxmemory_share(c.maxmemory, c.count);
  std::vector<otp::child_spec> children;
  for (int i = 0; i < c.count; ++i)
    children.push_back({.id = kv::shard_name(i),
                        .start = otp::named_worker<kv::shard>(kv::shard_name(i),
                                                              kv::shard_config{i, c.data_dir, c.appendfsync, c.count,
                                                                                c.repair_log, c.aof_rewrite_min_size,
                                                                                share, c.policy, c.aof_rewrite_chunk})});
  children.push_back({.id = "clock", .start = otp::process_worker(kv::shard_clock, c.count)});
  return otp::supervisor::starter({.strategy = otp::strategy::one_for_one, .intensity = c.intensity,
                                   .period = std::chrono::seconds(c.period)},
                                  std::move(children), std::string("shards"));
}

otp::task<otp::result<otp::pid>> start_connection(kv::connection_config c, int fd) {
  // A plain spawn: an idle scheduler takes the new connection before it
  // first runs, and it stays where it makes its socket (this_scheduler()).
  co_return otp::spawn_opt({.link = true}, kv::connection, fd, c).pid;
}

// As Redis does with maxclients: every client takes a descriptor, so the
// connection limit is lowered to what the open files limit leaves after a
// reserve for the schedulers, the shards' logs and the listener (the soft
// limit is raised first, up to the hard one). Past it a client is refused
// with an error instead of making accept fail with EMFILE.
std::size_t fit_clients(std::size_t wanted, unsigned schedulers, int shards) {
  const std::size_t threads = schedulers != 0 ? schedulers : std::max(1U, std::thread::hardware_concurrency());
  const std::size_t reserve = 32 + 4 * threads + static_cast<std::size_t>(std::max(shards, 0));
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return wanted;
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < wanted + reserve) {
    rlimit raised = rl;
    raised.rlim_cur = rl.rlim_max == RLIM_INFINITY ? wanted + reserve : std::min<rlim_t>(rl.rlim_max, wanted + reserve);
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0)
      rl = raised;
  }
  if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= wanted + reserve)
    return wanted;
  const std::size_t fit = rl.rlim_cur > reserve + 1 ? static_cast<std::size_t>(rl.rlim_cur) - reserve : 1;
  std::fprintf(stderr,
               "kvstore: max clients lowered from %zu to %zu: the open files limit is %llu (ulimit -n), and %zu "
               "descriptors are kept for the server itself\n",
               wanted, fit, static_cast<unsigned long long>(rl.rlim_cur), reserve);
  return fit;
}

void usage() {
  std::fprintf(stderr, "usage: kvstore [--config app.json] [--port N] [--shards N] [--data DIR] "
                       "[--appendfsync always|everysec|no] [--repair-log] [--admin] [--schedulers N] [--use-shared-cores] "
                       "[--max-clients N] [--max-query-buffer BYTES] [--maxmemory BYTES] "
                       "[--maxmemory-policy noeviction|allkeys-lru|volatile-lru|allkeys-random|volatile-random|"
                       "volatile-ttl]\n");
}

// A whole number from lo to hi, as the command line gave it, or nothing.
std::optional<long long> whole_number(const std::string& v, long long lo, long long hi) {
  if (v.empty() || !(std::isdigit(static_cast<unsigned char>(v[0])) || v[0] == '-'))
    return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(v.c_str(), &end, 10);
  if (*end != '\0' || errno == ERANGE || n < lo || n > hi)
    return std::nullopt;
  return n;
}

// A port that is taken (or an address that is not this machine's) is the
// user's to fix: one line before anything starts, as Redis says it. Left to
// the acceptor, each of its restarts would crash the same way, with a report
// each, until the tree gave up.
bool can_listen(const kv::acceptor_config& c) {
  asio::io_context io;
  std::error_code ec;
  const asio::ip::tcp::endpoint at(asio::ip::make_address(c.host), static_cast<unsigned short>(c.port));
  asio::ip::tcp::acceptor a(io);
  a.open(at.protocol(), ec);
  if (!ec)
    a.set_option(asio::ip::tcp::acceptor::reuse_address(true), ec);
  if (!ec)
    a.bind(at, ec);
  if (!ec)
    a.listen(asio::socket_base::max_listen_connections, ec);
  if (!ec)
    return true; // closed again here; the acceptor opens its own
  std::fprintf(stderr, "kvstore: cannot listen on %s:%d: %s\n", c.host.c_str(), c.port, ec.message().c_str());
  return false;
}

otp::json* child_args(otp::json& doc, const std::string& id) {
  for (auto& c : doc["supervisor"]["children"])
    if (c.value("id", "") == id)
      return c.contains("template") ? &c["template"]["args"] : &c["args"];
  return nullptr;
}

} // namespace

int main(int argc, char** argv) {
  std::string config = KVSTORE_CONFIG;
  otp::json overrides = otp::json::object();
  otp::node_options node_opts;
  // A server often shares its machine with its clients (redis-benchmark on
  // a 2-core VM): a scheduler whose core they want leaves it to them.
  node_opts.leave_shared_cores = true;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        usage();
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--config")
      config = value();
    else if (a == "--port" || a == "--shards" || a == "--schedulers") {
      const std::string v = value();
      const long long hi = a == "--port" ? 65535 : a == "--shards" ? kv::server_stats::max_shards : 255;
      const auto n = whole_number(v, 1, hi);
      if (!n) {
        std::fprintf(stderr, "kvstore: %s wants a whole number from 1 to %lld, not '%s'\n", a.c_str(), hi, v.c_str());
        return 2;
      }
      if (a == "--schedulers")
        node_opts.schedulers = static_cast<unsigned>(*n);
      else
        overrides[a == "--port" ? "port" : "count"] = *n;
    }
    else if (a == "--data") {
      const std::string v = value();
      if (v.empty()) {
        std::fprintf(stderr, "kvstore: --data wants a directory, not ''\n");
        return 2;
      }
      overrides["data_dir"] = v;
    } else if (a == "--appendfsync") {
      const std::string v = value();
      if (!kv::valid_appendfsync(v)) {
        std::fprintf(stderr, "kvstore: --appendfsync wants always, everysec or no, not '%s'\n", v.c_str());
        return 2;
      }
      overrides["appendfsync"] = v;
    }
    else if (a == "--repair-log")
      overrides["repair_log"] = true;
    else if (a == "--admin")
      overrides["admin"] = true;
    else if (a == "--max-clients" || a == "--max-query-buffer") {
      const std::string v = value();
      char* end = nullptr;
      const unsigned long long n = std::strtoull(v.c_str(), &end, 10);
      if (v.empty() || v[0] == '-' || *end != '\0' || n == 0) {
        std::fprintf(stderr, "kvstore: %s wants a positive integer, not '%s'\n", a.c_str(), v.c_str());
        return 2;
      }
      overrides[a == "--max-clients" ? "max_children" : "max_query_buffer"] = n;
    }
    else if (a == "--maxmemory") {
      const std::string v = value();
      const auto n = kv::parse_memory(v);
      if (!n) {
        std::fprintf(stderr, "kvstore: --maxmemory wants a number of bytes, optionally with a unit b, k, kb, m, mb, g "
                             "or gb (as Redis's: 1mb = 1048576, 1m = 1000000), not '%s'\n", v.c_str());
        return 2;
      }
      overrides["maxmemory"] = *n;
    } else if (a == "--maxmemory-policy") {
      const std::string v = value();
      if (!kv::parse_policy(v)) {
        std::fprintf(stderr, "kvstore: --maxmemory-policy wants noeviction, allkeys-lru, volatile-lru, allkeys-random, "
                             "volatile-random or volatile-ttl, not '%s'\n", v.c_str());
        return 2;
      }
      overrides["maxmemory_policy"] = v;
    }
    else if (a == "--use-shared-cores")
      node_opts.leave_shared_cores = false;
    else {
      usage();
      return 2;
    }
  }
  std::ifstream in(config);
  if (!in) {
    std::fprintf(stderr, "%s: cannot read the file\n", config.c_str());
    return 1;
  }
  otp::json doc;
  try {
    doc = otp::json::parse(in);
  } catch (const otp::json::exception& e) {
    std::fprintf(stderr, "%s: %s\n", config.c_str(), e.what());
    return 1;
  }
  in.close(); // one descriptor more for the clients
  // The command line wins over the file.
  if (auto* a = child_args(doc, "acceptor"); a && overrides.contains("port"))
    (*a)["port"] = overrides["port"];
  if (auto* s = child_args(doc, "shards")) {
    for (const char* k : {"count", "data_dir", "appendfsync", "repair_log", "maxmemory", "maxmemory_policy"})
      if (overrides.contains(k))
        (*s)[k] = overrides[k];
  }
  if (auto* c = child_args(doc, "connections")) {
    if (overrides.contains("admin"))
      (*c)["admin"] = true;
    if (overrides.contains("max_query_buffer"))
      (*c)["max_query_buffer"] = overrides["max_query_buffer"];
  }
  for (auto& c : doc["supervisor"]["children"]) {
    if (c.value("id", "") != "connections")
      continue;
    if (overrides.contains("max_children"))
      c["max_children"] = overrides["max_children"];
    if (const auto m = c.find("max_children"); m != c.end() && m->is_number_unsigned() && m->get<std::size_t>() > 0) {
      const otp::json* shards = child_args(doc, "shards");
      const int count = shards ? shards->value("count", 4) : 4;
      *m = fit_clients(m->get<std::size_t>(), node_opts.schedulers, count);
    }
  }

  otp::start_table table;
  table.function("shards", make_shards);
  table.function("acceptor", [](kv::acceptor_config c) { return otp::process_worker(kv::acceptor, c); });
  table.dynamic<kv::connection_config, int>("connection", [](kv::connection_config c) {
    return std::function<otp::task<otp::result<otp::pid>>(int)>([c](int fd) { return start_connection(c, fd); });
  });
  auto cfg = otp::load_app_config(doc, table, config);
  if (!cfg) {
    std::fprintf(stderr, "%s\n", cfg.error().context.c_str());
    return 1;
  }
  if (const otp::json* a = child_args(doc, "acceptor"); a != nullptr && !can_listen(a->get<kv::acceptor_config>()))
    return 1;
  if (const otp::json* s = child_args(doc, "shards"))
    std::printf("kvstore: data in %s\n", s->value("data_dir", default_data_dir()).c_str());
  const int rc = otp::run_application(std::move(cfg).value(), node_opts);
  std::printf("kvstore: stopped; the tree is shut down in order (exit code %d)\n", rc);
  return rc;
}
