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
#include <atomic>
#include <cctype>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <functional>
#include <span>
#include <stdexcept>
#include <string_view>
#include <system_error>

namespace kv {

using asio::ip::tcp;
namespace gs = otp::gen_server;

namespace {

int shard_count() { return std::max(1, stats().shards.load()); }

int shard_of_hash(std::size_t wide) { return static_cast<int>(wide % static_cast<std::size_t>(shard_count())); }
int shard_of(std::string_view key) { return shard_of_hash(wide_hash(key)); }

bool iequals(std::string_view a, std::string_view upper) {
  return a.size() == upper.size() && std::equal(a.begin(), a.end(), upper.begin(), [](char x, char u) {
           return std::toupper(static_cast<unsigned char>(x)) == u;
         });
}

std::string lower(std::string_view v) {
  std::string s(v);
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::uint64_t used_memory() {
  std::uint64_t sum = 0;
  for (int s = 0; s < stats().shards.load(); ++s)
    sum += stats().shard_memory.at(static_cast<std::size_t>(s)).load(std::memory_order_relaxed);
  return sum;
}

// Redis refuses a write command whole when memory is over maxmemory (and
// nothing could be evicted): an MSET whose keys fall in a shard already
// over its share under noeviction is refused before any of it runs.
bool over_memory(const std::vector<std::string_view>& argv) {
  const std::uint64_t limit = stats().maxmemory.load();
  if (limit == 0 || stats().policy.load() != eviction_policy::noeviction)
    return false;
  const std::uint64_t share = maxmemory_share(limit, shard_count());
  for (std::size_t i = 1; i < argv.size(); i += 2)
    if (stats().shard_memory.at(static_cast<std::size_t>(shard_of(argv[i]))).load(std::memory_order_relaxed) > share)
      return true;
  return false;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
    .count();
}

// Redis's text: the name and the arguments are cut at a NUL (C strings)
// and at 128 bytes (and error() turns CR and LF into spaces).
std::string unknown_command(const std::vector<std::string_view>& argv) {
  auto c_string = [](std::string_view s) { return s.substr(0, s.find('\0')); };
  std::string args;
  for (std::size_t i = 1; i < argv.size() && args.size() < 128; ++i) {
    const std::size_t room = 128 - args.size();
    args.append("'").append(c_string(argv[i]).substr(0, room)).append("' ");
  }
  return "ERR unknown command '" + std::string(c_string(argv[0]).substr(0, 128)) + "', with args beginning with: " +
         args;
}

// A shard that cannot answer (it is restarting): the client may retry.
std::string unavailable(int shard, const otp::error& e) {
  std::string out;
  error(out, "TRYAGAIN shard " + std::to_string(shard) + " is unavailable: " + e.message());
  return out;
}

// The commands of one read, executed together: the key commands' parts
// go to their shards as one batch per shard (one call, one log write),
// and the replies are put back in the commands' order. Keys in different
// shards are independent, and each shard runs its batch in order, so this
// answers as running the commands one by one would.
class pipeline {
public:
  enum class step { more, barrier, quit };

  explicit pipeline(const connection_config& config) : config_(config) {}

  /// Takes one command. `barrier`: it needs every shard (KEYS, DBSIZE,
  /// INFO, DEBUG): run() and assemble() what came before, then barrier(argv).
  step add(const std::vector<std::string_view>& argv);

  /// Sends the batches and waits for their replies.
  otp::task<void> run();

  /// A command that needs every shard, after run(). (Its calls wait as
  /// long as the shards take: a long KEYS scan is no failure.)
  otp::task<void> barrier(const std::vector<std::string_view>& argv);

  /// Appends the replies, in order, and starts over.
  void assemble(std::string& out);

  // A reply made here, as RESP bytes (as is, a bulk string, an error).
  void text(std::string_view s) { raw(&append_raw, s); }
  void bulk_text(std::string_view s) { raw(&bulk, s); }
  void error_text(std::string_view s) { raw(&error, s); }

private:
  struct part {
    enum kind_t : std::uint8_t { raw, one, mget, sum, ok };
    kind_t kind;
    std::uint32_t first; // text: offset in texts_; others: index in refs_
    std::uint32_t count; // text: length; others: ops
  };
  struct ref {
    std::uint32_t shard;
    std::uint32_t index;
  };

  void op(shard::op::kind_t kind, std::string_view key, std::string_view value = {},
          std::int64_t expire_at_ms = shard::op::no_expiry, std::uint8_t cond = shard::op::any);
  void keyed(part::kind_t kind, std::uint32_t first) {
    parts_.push_back({kind, first, static_cast<std::uint32_t>(refs_.size()) - first});
  }
  void wrong_arity(std::string_view cmd) { error_text("ERR wrong number of arguments for '" + lower(cmd) + "' command"); }
  void set_command(const std::vector<std::string_view>& argv);
  void expire_command(const std::vector<std::string_view>& argv, bool seconds, bool absolute);
  void incr_command(const std::vector<std::string_view>& argv);
  static void append_raw(std::string& out, std::string_view s) { out += s; }
  // Encodes `s` into texts_ and makes it the next part.
  void raw(void (*encode)(std::string&, std::string_view), std::string_view s) {
    const std::size_t at = texts_.size();
    encode(texts_, s);
    parts_.push_back({part::raw, static_cast<std::uint32_t>(at), static_cast<std::uint32_t>(texts_.size() - at)});
  }
  void group(std::uint32_t first);

  const connection_config& config_;
  std::vector<shard::batch> batches_;
  std::vector<std::string> failed_; // per shard: its error reply if its call failed
  std::vector<std::uint32_t> order_; // the shards to call, in the order of their first command
  std::vector<part> parts_;
  std::vector<ref> refs_;
  std::string texts_;
};

void pipeline::op(shard::op::kind_t kind, std::string_view key, std::string_view value, std::int64_t expire_at_ms,
                  std::uint8_t cond) {
  // Hashed once: the shard's prefetch and lookups take key_hash.
  const std::size_t wide = wide_hash(key);
  const auto s = static_cast<std::uint32_t>(shard_of_hash(wide));
  if (batches_.size() < static_cast<std::size_t>(shard_count()))
    batches_.resize(static_cast<std::size_t>(shard_count()));
  shard::batch& b = batches_[s];
  shard::op o;
  o.kind = kind;
  o.key_off = b.bytes.size();
  o.key_len = static_cast<std::uint32_t>(key.size());
  o.key_hash = fold_hash(wide);
  b.bytes += key;
  if (value.size() >= shard::big_value) {
    o.value_big = true;
    o.value_off = b.big.size();
    b.big.emplace_back(value);
  } else {
    o.value_off = b.bytes.size();
    b.bytes += value;
  }
  o.value_len = value.size();
  o.expire_at_ms = expire_at_ms;
  o.cond = cond;
  refs_.push_back({s, static_cast<std::uint32_t>(b.ops.size())});
  b.ops.push_back(o);
}

// The ops of one command that fall in one shard are refused together when
// that shard is short of memory (an MSET is not half done there).
void pipeline::group(std::uint32_t first) {
  std::array<std::uint32_t, server_stats::max_shards> count{};
  std::array<std::uint32_t, server_stats::max_shards> head{};
  for (std::uint32_t r = first; r < refs_.size(); ++r)
    if (count[refs_[r].shard]++ == 0)
      head[refs_[r].shard] = refs_[r].index;
  for (std::size_t s = 0; s < count.size(); ++s)
    if (count[s] > 1)
      batches_[s].ops[head[s]].group = count[s];
}

// SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL] (or its
// error), parsed as Redis 7.0 does: an option is refused where one it
// excludes came before (so a repeated EX wins), then the time is checked;
// a time whose absolute milliseconds do not fit an int64 is refused (it
// was a signed overflow).
void pipeline::set_command(const std::vector<std::string_view>& argv) {
  const std::size_t n = argv.size();
  enum : unsigned { ex = 1, px = 2, exat = 4, pxat = 8 };
  unsigned timed = 0;
  std::uint8_t cond = shard::op::any;
  std::string_view value;
  for (std::size_t i = 3; i < n; ++i) {
    const std::string_view opt = argv[i];
    // A time option needs its number, no KEEPTTL and no time of another kind before it.
    const auto time_ok = [&](unsigned unit) {
      return i + 1 < n && (cond & shard::op::keepttl) == 0 && (timed & ~unit) == 0;
    };
    unsigned unit = 0;
    if (iequals(opt, "NX") && (cond & shard::op::xx) == 0)
      cond |= shard::op::nx;
    else if (iequals(opt, "XX") && (cond & shard::op::nx) == 0)
      cond |= shard::op::xx;
    else if (iequals(opt, "GET"))
      cond |= shard::op::get_old;
    else if (iequals(opt, "KEEPTTL") && timed == 0)
      cond |= shard::op::keepttl;
    else if (iequals(opt, "EX") && time_ok(ex))
      unit = ex;
    else if (iequals(opt, "PX") && time_ok(px))
      unit = px;
    else if (iequals(opt, "EXAT") && time_ok(exat))
      unit = exat;
    else if (iequals(opt, "PXAT") && time_ok(pxat))
      unit = pxat;
    else {
      error_text("ERR syntax error");
      return;
    }
    if (unit != 0) {
      timed = unit;
      value = argv[++i];
    }
  }
  std::int64_t expire_at = shard::op::no_expiry;
  if (timed != 0) {
    const auto v = to_int64(value);
    if (!v) {
      error_text("ERR value is not an integer or out of range");
      return;
    }
    std::int64_t ms = *v;
    const bool seconds = timed == ex || timed == exat;
    const bool relative = timed == ex || timed == px;
    if (ms <= 0 || (seconds && __builtin_mul_overflow(ms, 1000, &ms))
        || (relative && __builtin_add_overflow(ms, now_ms(), &ms)) || ms == shard::op::no_expiry) {
      error_text("ERR invalid expire time in 'set' command");
      return;
    }
    expire_at = ms;
  }
  const auto first = static_cast<std::uint32_t>(refs_.size());
  op(shard::op::set, argv[1], argv[2], expire_at, cond);
  keyed(part::one, first);
}

// INCR, DECR, INCRBY and DECRBY (or their error), as Redis 7.0.
void pipeline::incr_command(const std::vector<std::string_view>& argv) {
  const std::string_view cmd = argv[0];
  const bool by = iequals(cmd, "INCRBY") || iequals(cmd, "DECRBY");
  if (argv.size() != (by ? 3U : 2U)) {
    wrong_arity(cmd);
    return;
  }
  const bool down = iequals(cmd, "DECR") || iequals(cmd, "DECRBY");
  std::int64_t delta = 1;
  if (by) {
    const auto v = to_int64(argv[2]);
    if (!v) {
      error_text("ERR value is not an integer or out of range");
      return;
    }
    if (down && *v == INT64_MIN) {
      error_text("ERR decrement would overflow");
      return;
    }
    delta = *v;
  }
  const auto first = static_cast<std::uint32_t>(refs_.size());
  op(shard::op::incr, argv[1]);
  batches_[refs_.back().shard].ops.back().n = down ? -delta : delta;
  keyed(part::one, first);
}

// EXPIRE/PEXPIRE/EXPIREAT/PEXPIREAT key time [NX|XX|GT|LT ...] (or its
// error), checked in Redis 7.0's order: the options, the number, then the
// time's range.
void pipeline::expire_command(const std::vector<std::string_view>& argv, bool seconds, bool absolute) {
  std::uint8_t cond = shard::op::any;
  for (std::size_t i = 3; i < argv.size(); ++i) {
    if (iequals(argv[i], "NX"))
      cond |= shard::op::nx;
    else if (iequals(argv[i], "XX"))
      cond |= shard::op::xx;
    else if (iequals(argv[i], "GT"))
      cond |= shard::op::gt;
    else if (iequals(argv[i], "LT"))
      cond |= shard::op::lt;
    else {
      error_text("ERR Unsupported option " + std::string(argv[i]));
      return;
    }
  }
  if ((cond & shard::op::nx) != 0 && (cond & (shard::op::xx | shard::op::gt | shard::op::lt)) != 0) {
    error_text("ERR NX and XX, GT or LT options at the same time are not compatible");
    return;
  }
  if ((cond & shard::op::gt) != 0 && (cond & shard::op::lt) != 0) {
    error_text("ERR GT and LT options at the same time are not compatible");
    return;
  }
  const auto v = to_int64(argv[2]);
  if (!v) {
    error_text("ERR value is not an integer or out of range");
    return;
  }
  // A time already past deletes the key; one that overflows is refused.
  std::int64_t when = *v;
  if ((seconds && __builtin_mul_overflow(when, 1000, &when)) || (!absolute && __builtin_add_overflow(when, now_ms(), &when))) {
    error_text("ERR invalid expire time in '" + lower(argv[0]) + "' command");
    return;
  }
  const auto first = static_cast<std::uint32_t>(refs_.size());
  op(shard::op::expire, argv[1], {}, when, cond);
  keyed(part::one, first);
}

// Not inlined into the connection: its locals would grow every connection's frame.
[[gnu::noinline]] pipeline::step pipeline::add(const std::vector<std::string_view>& argv) {
  ++stats().commands;
  const std::string_view cmd = argv[0];
  const std::size_t n = argv.size();
  const auto first = static_cast<std::uint32_t>(refs_.size());
  if (iequals(cmd, "GET")) {
    if (n != 2)
      wrong_arity(cmd);
    else {
      op(shard::op::get, argv[1]);
      keyed(part::one, first);
    }
  } else if (iequals(cmd, "INCR") || iequals(cmd, "DECR") || iequals(cmd, "INCRBY") || iequals(cmd, "DECRBY")) {
    incr_command(argv);
  } else if (iequals(cmd, "SET")) {
    if (n < 3)
      wrong_arity(cmd);
    else
      set_command(argv);
  } else if (iequals(cmd, "TTL") || iequals(cmd, "PTTL") || iequals(cmd, "PERSIST")) {
    if (n != 2)
      wrong_arity(cmd);
    else {
      op(iequals(cmd, "TTL") ? shard::op::ttl : iequals(cmd, "PTTL") ? shard::op::pttl : shard::op::persist, argv[1]);
      keyed(part::one, first);
    }
  } else if (iequals(cmd, "EXPIRE") || iequals(cmd, "PEXPIRE") || iequals(cmd, "EXPIREAT") || iequals(cmd, "PEXPIREAT")) {
    if (n < 3)
      wrong_arity(cmd);
    else
      expire_command(argv, iequals(cmd, "EXPIRE") || iequals(cmd, "EXPIREAT"),
                     iequals(cmd, "EXPIREAT") || iequals(cmd, "PEXPIREAT"));
  } else if (iequals(cmd, "STRLEN") || iequals(cmd, "GETDEL")) {
    if (n != 2)
      wrong_arity(cmd);
    else {
      op(iequals(cmd, "STRLEN") ? shard::op::strlen : shard::op::getdel, argv[1]);
      keyed(part::one, first);
    }
  } else if (iequals(cmd, "SETNX") || iequals(cmd, "GETSET")) {
    // SET NX with a 1 or 0 for a reply, and SET GET.
    if (n != 3)
      wrong_arity(cmd);
    else {
      op(shard::op::set, argv[1], argv[2], shard::op::no_expiry,
         iequals(cmd, "SETNX") ? shard::op::nx | shard::op::as_integer : shard::op::get_old);
      keyed(part::one, first);
    }
  } else if (iequals(cmd, "DEL") || iequals(cmd, "EXISTS")) {
    if (n < 2) {
      wrong_arity(cmd);
    } else {
      const auto kind = iequals(cmd, "DEL") ? shard::op::del : shard::op::exists;
      for (std::size_t i = 1; i < n; ++i)
        op(kind, argv[i]);
      keyed(part::sum, first);
    }
  } else if (iequals(cmd, "MGET")) {
    if (n < 2) {
      wrong_arity(cmd);
    } else {
      for (std::size_t i = 1; i < n; ++i)
        op(shard::op::get, argv[i]);
      keyed(part::mget, first);
    }
  } else if (iequals(cmd, "MSET")) {
    if (n < 3 || n % 2 == 0) {
      wrong_arity(cmd);
    } else if (over_memory(argv)) {
      error_text(oom_message);
    } else {
      for (std::size_t i = 1; i + 1 < n; i += 2)
        op(shard::op::set, argv[i], argv[i + 1]);
      keyed(part::ok, first);
      group(first);
    }
  } else if (iequals(cmd, "PING")) {
    if (n > 2)
      wrong_arity(cmd);
    else if (n == 2)
      bulk_text(argv[1]);
    else
      text("+PONG\r\n");
  } else if (iequals(cmd, "ECHO")) {
    if (n != 2)
      wrong_arity(cmd);
    else
      bulk_text(argv[1]);
  } else if (iequals(cmd, "QUIT")) {
    text("+OK\r\n");
    return step::quit;
  } else if (iequals(cmd, "KEYS") || iequals(cmd, "DBSIZE") || iequals(cmd, "INFO") || iequals(cmd, "DEBUG")) {
    return step::barrier;
  } else if (iequals(cmd, "CONFIG") && n == 3 && iequals(argv[1], "GET")) {
    // redis-benchmark asks for these at start.
    const std::string key = lower(argv[2]);
    std::string r;
    if (key == "save" || key == "appendonly") {
      array_header(r, 2);
      bulk(r, key);
      bulk(r, key == "appendonly" ? "yes" : "");
    } else if (key == "maxmemory" || key == "maxmemory-policy") {
      array_header(r, 2);
      bulk(r, key);
      bulk(r, key == "maxmemory" ? std::to_string(stats().maxmemory.load())
                                 : std::string(policy_name(stats().policy.load())));
    } else {
      array_header(r, 0);
    }
    text(r);
  } else {
    error_text(unknown_command(argv));
  }
  return step::more;
}

otp::task<void> pipeline::run() {
  failed_.resize(batches_.size());
  for (auto& f : failed_)
    f.clear();
  // The shards in the order the pipeline first named them: a client's
  // write to one shard is in before its later read of another is asked.
  order_.clear();
  for (const ref& r : refs_)
    if (std::find(order_.begin(), order_.end(), r.shard) == order_.end())
      order_.push_back(r.shard);
  for (const std::uint32_t s : order_) {
    // (g++ 12: the request is a local, not built inside co_await.) No
    // timeout: a batch that timed out would still run later (a retried
    // INCR would count twice); a shard that dies answers `exited`.
    shard::batch req = std::move(batches_[s]);
    auto r = co_await gs::call<shard>(shard_name(static_cast<int>(s)), std::move(req), otp::infinity);
    if (r)
      batches_[s] = std::move(r).value();
    else
      failed_[s] = unavailable(static_cast<int>(s), r.error());
  }
}

otp::task<void> pipeline::barrier(const std::vector<std::string_view>& argv) {
  const std::string_view cmd = argv[0];
  const std::size_t n = argv.size();
  const int shards = stats().shards.load();
  std::string out;
  if (iequals(cmd, "KEYS") || iequals(cmd, "DBSIZE")) {
    const bool keys = iequals(cmd, "KEYS");
    if ((keys && n != 2) || (!keys && n != 1)) {
      wrong_arity(cmd);
      co_return;
    }
    std::vector<std::string> all;
    std::int64_t size = 0;
    for (int s = 0; s < shards; ++s) {
      if (keys) {
        shard::keys req{std::string(argv[1])};
        auto r = co_await gs::call<shard>(shard_name(s), std::move(req), otp::infinity);
        if (!r) {
          text(unavailable(s, r.error()));
          co_return;
        }
        all.insert(all.end(), std::make_move_iterator(r.value().begin()), std::make_move_iterator(r.value().end()));
      } else {
        auto r = co_await gs::call<shard>(shard_name(s), shard::dbsize{}, otp::infinity);
        if (!r) {
          text(unavailable(s, r.error()));
          co_return;
        }
        size += r.value();
      }
    }
    if (keys) {
      array_header(out, all.size());
      for (const auto& k : all)
        bulk(out, k);
    } else {
      integer(out, size);
    }
  } else if (iequals(cmd, "INFO")) {
    std::string info = "# Server\r\nredis_version:7.0.0\r\nserver:otp-cpp kvstore sample\r\n"
                       "# Clients\r\nconnected_clients:"
                       + std::to_string(stats().connections.load()) + "\r\n# Memory\r\nused_memory:"
                       + std::to_string(used_memory()) + "\r\nmaxmemory:" + std::to_string(stats().maxmemory.load())
                       + "\r\nmaxmemory_policy:" + std::string(policy_name(stats().policy.load()))
                       + "\r\n# Stats\r\ntotal_commands_processed:" + std::to_string(stats().commands.load())
                       + "\r\nevicted_keys:" + std::to_string(stats().evicted_keys.load())
                       + "\r\n# Persistence\r\naof_fsyncs:"
                       + std::to_string(stats().log_syncs.load()) + "\r\naof_rewrite_in_progress:"
                       + (stats().rewrites_running.load() > 0 ? "1" : "0") + "\r\naof_rewrites:"
                       + std::to_string(stats().rewrites.load()) + "\r\n# Shards\r\n";
    std::int64_t total = 0;
    for (int s = 0; s < shards; ++s) {
      auto r = co_await gs::call<shard>(shard_name(s), shard::dbsize{}, otp::infinity);
      const int starts = stats().shard_starts.at(static_cast<std::size_t>(s)).load();
      // Where it runs now: shards are plain processes, placed by the runtime.
      std::string where = "unavailable";
      if (auto p = otp::whereis(shard_name(s)))
        if (auto pi = co_await otp::get_process_info(*p))
          where = std::to_string(pi->scheduler);
      info += "shard_" + std::to_string(s) + ":keys=" + (r ? std::to_string(r.value()) : std::string("unavailable"))
              + ",restarts=" + std::to_string(std::max(0, starts - 1)) + ",scheduler=" + where + "\r\n";
      total += r ? r.value() : 0;
    }
    info += "# Keyspace\r\ndb0:keys=" + std::to_string(total) + ",expires=0,avg_ttl=0\r\n";
    // The runtime's schedulers (node::statistics()): since start, how busy
    // each was, what runs there now, what moved (compacted_out: of it, what
    // it gathered on a busier one while it had little to do), whether it is idle
    // (hungry), shares its core with another busy thread (contended; unless
    // --use-shared-cores, how much of its core other threads took, and
    // whether it hands its processes to a free core: leaving), and
    // how many processes its I/O binds there (connections: their sockets).
    const auto sched = otp::this_node().statistics();
    info += "# Schedulers\r\nschedulers:" + std::to_string(sched.size()) + "\r\n";
    for (const auto& st : sched) {
      const auto pct = st.total.count() > 0 ? 100 * st.active.count() / st.total.count() : 0;
      info += "scheduler_" + std::to_string(st.index) + ":active_pct=" + std::to_string(pct)
              + ",run_queue=" + std::to_string(st.run_queue) + ",processes=" + std::to_string(st.processes)
              + ",migrated_in=" + std::to_string(st.migrated_in) + ",migrated_out=" + std::to_string(st.migrated_out)
              + ",compacted_out=" + std::to_string(st.compacted_out)
              + ",hungry=" + (st.hungry ? "1" : "0") + ",contended=" + (st.contended ? "1" : "0")
              + ",others_on_core_pct="
              + (st.others_on_core < 0 ? std::string("unknown") : std::to_string(std::lround(st.others_on_core * 100)))
              + ",leaving=" + (st.leaving ? "1" : "0") + ",cpu=" + (st.cpu < 0 ? std::string("none") : std::to_string(st.cpu))
              + ",io_bound=" + std::to_string(st.io_bound) + "\r\n";
    }
    bulk(out, info);
  } else if (n == 3 && iequals(argv[1], "CRASH") && iequals(argv[2], "CONNECTION") && config_.admin) {
    // This connection's process crashes; its client sees the socket close.
    throw std::runtime_error("connection crashed on purpose (DEBUG CRASH CONNECTION)");
  } else if (n == 3 && iequals(argv[1], "CRASH") && config_.admin) {
    const auto s = to_int64(argv[2]);
    if (!s || *s < 0 || *s >= shards) {
      error_text("ERR no such shard");
      co_return;
    }
    gs::cast<shard>(shard_name(static_cast<int>(*s)), shard::crash{});
    simple(out, "OK");
  } else {
    error_text(unknown_command(argv));
    co_return;
  }
  text(out);
}

void pipeline::assemble(std::string& out) {
  auto view = [&](const ref& r) {
    const shard::batch& b = batches_[r.shard];
    const shard::op& o = b.ops[r.index];
    return std::string_view(b.out).substr(o.out_off, o.out_len);
  };
  for (const part& p : parts_) {
    if (p.kind == part::raw) {
      out.append(texts_, p.first, p.count);
      continue;
    }
    const std::span<const ref> refs(refs_.data() + p.first, p.count);
    // A shard that did not answer, or an error, is the whole reply.
    const auto down = std::find_if(refs.begin(), refs.end(), [&](const ref& r) { return !failed_[r.shard].empty(); });
    if (down != refs.end()) {
      out += failed_[down->shard];
      continue;
    }
    const auto bad = std::find_if(refs.begin(), refs.end(), [&](const ref& r) { return batches_[r.shard].ops[r.index].error; });
    if (bad != refs.end()) {
      out += view(*bad);
      continue;
    }
    switch (p.kind) {
      case part::one:
        if (out.empty() && parts_.size() == 1 && view(refs[0]).size() == batches_[refs[0].shard].out.size())
          out.swap(batches_[refs[0].shard].out); // a lone reply (a large GET): not copied
        else
          out += view(refs[0]);
        break;
      case part::mget:
        array_header(out, refs.size());
        for (const ref& r : refs)
          out += view(r);
        break;
      case part::sum: {
        std::int64_t sum = 0;
        for (const ref& r : refs)
          sum += batches_[r.shard].ops[r.index].n;
        integer(out, sum);
        break;
      }
      case part::ok:
        simple(out, "OK");
        break;
      case part::raw:
        break;
    }
  }
  parts_.clear();
  refs_.clear();
  texts_.clear();
  for (auto& b : batches_)
    b.clear();
}

} // namespace

void from_json(const otp::json& j, connection_config& c) {
  c.admin = j.value("admin", c.admin);
  c.max_query_buffer = otp::integer_or(j, "max_query_buffer", c.max_query_buffer, std::size_t{1});
}

void from_json(const otp::json& j, acceptor_config& c) {
  if (const auto h = j.find("host"); h != j.end()) {
    std::error_code ec;
    if (!h->is_string() || (asio::ip::make_address(h->get<std::string>(), ec), ec))
      throw std::invalid_argument("acceptor: host must be an IP address as a string (\"127.0.0.1\", \"::1\"), not "
                                  + h->dump());
    c.host = h->get<std::string>();
  }
  if (const auto p = j.find("port"); p != j.end()) {
    if (!p->is_number_integer() || p->get<std::int64_t>() < 1 || p->get<std::int64_t>() > 65535)
      throw std::invalid_argument("acceptor: port must be a number from 1 to 65535, not " + p->dump());
    c.port = p->get<int>();
  }
}

namespace {

// Replies that could not be sent at once (the client is not reading yet:
// a client may send a whole pipeline before it reads, as redis-py does).
// A writer process, linked and on the connection's scheduler (the socket's
// io_context), sends them while the connection goes on reading; past
// `output_limit` of backlog the connection stops reading until it drains.
// The socket moves with the connection (otp::follow) until a writer is
// needed: then both stay on that scheduler for good.
struct output {
  explicit output(int fd) : socket(tcp::v4(), fd) {}
  otp::follow<tcp::socket> socket;
  std::atomic<int> refs{0};
  std::size_t backlog = 0; // bytes handed to the writer, not yet sent
  bool waiting = false;    // the connection waits for the backlog to drain
  bool failed = false;     // a send failed: the client is gone
  otp::pid connection;
  std::optional<otp::pid> writer;
};
// Shared by the connection and its writer. Not a shared_ptr: its control
// block is polymorphic, and UBSan's check of a vtable needs a free file
// descriptor (docs/design.md), which a server out of descriptors has not.
class output_ref {
public:
  explicit output_ref(output* o) noexcept : o_(o) { ++o_->refs; }
  output_ref(const output_ref& r) noexcept : o_(r.o_) { ++o_->refs; }
  output_ref& operator=(const output_ref&) = delete;
  ~output_ref() {
    if (--o_->refs == 0)
      delete o_;
  }
  output* operator->() const noexcept { return o_; }

private:
  output* o_;
};

struct outgoing {
  std::string bytes;
};
struct drained {};
constexpr std::size_t output_limit = 64 * 1024 * 1024;

otp::task<void> writer(output_ref o) {
  for (;;) {
    outgoing next = co_await otp::receive<outgoing>();
    auto [ec, sent] = co_await asio::async_write(*o->socket, asio::buffer(next.bytes), otp::use_process_nothrow);
    (void)sent;
    o->backlog -= next.bytes.size();
    if (ec)
      o->failed = true;
    if (o->waiting && (o->failed || o->backlog <= output_limit / 2)) {
      o->waiting = false;
      otp::send(o->connection, drained{});
    }
    if (o->failed)
      co_return;
  }
}

// Sends `out` (and empties it): at once if the socket takes it all, else
// the rest through the writer, behind what it already has.
void send_replies(const output_ref& o, std::string& out) {
  std::size_t done = 0;
  if (o->backlog == 0) {
    asio::error_code ec;
    done = o->socket->write_some(asio::buffer(out), ec);
    if (ec && ec != asio::error::would_block) {
      o->failed = true;
      out.clear();
      return;
    }
  }
  if (done < out.size()) {
    if (!o->writer) // both bound here: this_scheduler() binds the connection
      o->writer = otp::spawn_opt({.scheduler = otp::this_scheduler().index(), .link = true}, writer, o).pid;
    out.erase(0, done);
    o->backlog += out.size();
    otp::send(*o->writer, outgoing{std::move(out)});
  }
  out.clear();
  if (out.capacity() > 64 * 1024)
    std::string().swap(out); // a large reply's room is not kept while idle
}

// Waits until the writer's backlog is at most `most` (0: all sent).
otp::task<void> drain(const output_ref& o, std::size_t most) {
  while (o->backlog > most && !o->failed) {
    o->waiting = true;
    co_await otp::receive<drained>();
  }
}

} // namespace

otp::task<void> connection(int fd, connection_config config) {
  const output_ref io(new output(fd));
  otp::follow<tcp::socket>& socket = io->socket;
  socket->non_blocking(true); // send_replies writes what the socket takes at once
  {
    // As Redis: no Nagle. A reply written while an earlier one is
    // unacknowledged would otherwise wait for the client's (delayed) ACK.
    asio::error_code ignored;
    socket->set_option(tcp::no_delay(true), ignored);
  }
  io->connection = otp::self();
  ++stats().connections;
  struct gone {
    ~gone() { --stats().connections; }
  } count_guard;
  request_parser parser;
  pipeline commands(config);
  std::vector<std::string_view> argv;
  std::string out, message;
  for (;;) {
    // Read into the parser's buffer (4 KiB at first, more while a client
    // sends more): no buffer of its own in each connection's frame.
    char* room = parser.prepare(4096);
    auto [ec, got] = co_await socket->async_read_some(asio::buffer(room, parser.room()), socket.use_process_nothrow);
    if (ec)
      break; // the client went away (mid-command or not): nothing to answer
    parser.commit(got);
    bool open = true;
    for (;;) {
      const auto st = parser.next(argv, message);
      if (st == request_parser::status::need_more)
        break;
      if (st == request_parser::status::error) {
        commands.error_text(message); // as Redis: reply, then close
        open = false;
        break;
      }
      const auto step = commands.add(argv);
      if (step == pipeline::step::barrier) {
        // What came before it is run and answered first (a batch is sent once).
        co_await commands.run();
        commands.assemble(out);
        co_await commands.barrier(argv);
      } else if (step == pipeline::step::quit) {
        open = false;
        break;
      }
    }
    co_await commands.run();
    commands.assemble(out);
    parser.release_consumed();
    // As Redis's client-query-buffer-limit: a client whose unfinished input
    // passes the limit is closed (after the replies it has earned).
    if (open && parser.buffered() > config.max_query_buffer) {
      std::fprintf(stderr, "kvstore: closing a client whose query buffer passed %zu bytes (--max-query-buffer)\n",
                   config.max_query_buffer);
      open = false;
    }
    // One write per read: pipelined commands get their replies together.
    if (!out.empty())
      send_replies(io, out);
    if (!open)
      co_await drain(io, 0); // the replies go out before the close
    else
      co_await drain(io, output_limit);
    if (!open || io->failed)
      break;
  }
  // A normal exit does not end a linked process: the writer is told to.
  if (io->writer)
    otp::exit(*io->writer, otp::exit_reason::shutdown());
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
