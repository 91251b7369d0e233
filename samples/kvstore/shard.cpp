// SPDX-License-Identifier: Apache-2.0
#include "shard.hpp"

#include "resp.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <system_error>

namespace kv {

server_stats& stats() {
  static server_stats s;
  return s;
}

std::string shard_name(int i) { return "shard_" + std::to_string(i); }

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
    .count();
}

[[noreturn]] void fail(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

} // namespace

shard::shard(shard_config c) : config_(std::move(c)) {}

shard::~shard() {
  if (fd_ >= 0)
    ::close(fd_);
}

void shard::init(otp::context&) {
  if (config_.appendfsync != "always" && config_.appendfsync != "everysec" && config_.appendfsync != "no")
    throw std::invalid_argument("appendfsync must be always, everysec or no, not " + config_.appendfsync);
  std::filesystem::create_directories(config_.data_dir);
  const std::string path = config_.data_dir + "/shard-" + std::to_string(config_.index) + ".aof";
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0)
    fail("open " + path);
  replay();
  ++stats().shard_starts.at(static_cast<std::size_t>(config_.index));
}

void shard::replay() {
  std::string text;
  char buf[1 << 16];
  ssize_t n = 0;
  ::lseek(fd_, 0, SEEK_SET);
  while ((n = ::read(fd_, buf, sizeof buf)) > 0)
    text.append(buf, static_cast<std::size_t>(n));
  if (n < 0)
    fail("read the append-only log");
  request_parser p;
  p.feed(text.data(), text.size());
  std::vector<std::string> argv;
  std::string err;
  while (p.next(argv, err) == request_parser::status::command) {
    if (argv[0] == "SET" && (argv.size() == 3 || argv.size() == 5)) {
      entry e{argv[2], std::nullopt};
      if (argv.size() == 5)
        e.expire_at_ms = to_int64(argv[4]);
      data_[argv[1]] = std::move(e);
    } else if (argv[0] == "DEL" && argv.size() == 2) {
      data_.erase(argv[1]);
    }
  }
  // A record cut short by a crash was never acknowledged: drop it, so new
  // records do not follow a torn one.
  const auto complete = static_cast<off_t>(text.size() - p.buffered());
  if (complete != static_cast<off_t>(text.size()) && ::ftruncate(fd_, complete) != 0)
    fail("truncate the append-only log");
}

// Written before the reply: the bytes are in the kernel when the client
// hears OK, so they survive the shard's crash (and, with `always`, the machine's).
void shard::append(const std::vector<std::string>& argv, otp::context& ctx) {
  std::string rec;
  command(rec, argv);
  std::size_t done = 0;
  while (done < rec.size()) {
    const ssize_t n = ::write(fd_, rec.data() + done, rec.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      fail("write the append-only log"); // a crash: the client gets no OK
    done += static_cast<std::size_t>(n);
  }
  if (config_.appendfsync == "always") {
    if (::fdatasync(fd_) != 0)
      fail("fsync the append-only log");
  } else if (config_.appendfsync == "everysec") {
    const auto now = std::chrono::steady_clock::now();
    if (now - last_sync_ >= std::chrono::seconds(1)) {
      if (::fdatasync(fd_) != 0)
        fail("fsync the append-only log");
      last_sync_ = now;
      dirty_ = false;
    } else {
      dirty_ = true;
      ctx.set_timeout(std::chrono::seconds(1)); // sync what is left once idle
    }
  }
}

shard::entry* shard::find_live(const std::string& key) {
  auto it = data_.find(key);
  if (it == data_.end())
    return nullptr;
  if (it->second.expire_at_ms && *it->second.expire_at_ms <= now_ms()) {
    data_.erase(it); // expired: gone (the log keeps the absolute deadline)
    return nullptr;
  }
  return &it->second;
}

std::optional<std::string> shard::handle_call(otp::context&, get r) {
  if (entry* e = find_live(r.key))
    return e->value;
  return std::nullopt;
}

bool shard::handle_call(otp::context& ctx, set r) {
  std::vector<std::string> argv{"SET", r.key, r.value};
  if (r.expire_at_ms) {
    argv.emplace_back("PXAT");
    argv.push_back(std::to_string(*r.expire_at_ms));
  }
  append(argv, ctx);
  data_[r.key] = entry{std::move(r.value), r.expire_at_ms};
  return true;
}

std::int64_t shard::handle_call(otp::context& ctx, del r) {
  if (find_live(r.key) == nullptr)
    return 0;
  append({"DEL", r.key}, ctx);
  data_.erase(r.key);
  return 1;
}

std::int64_t shard::handle_call(otp::context&, exists r) { return find_live(r.key) != nullptr ? 1 : 0; }

otp::result<std::int64_t> shard::handle_call(otp::context& ctx, incr r) {
  entry* e = find_live(r.key);
  std::int64_t v = 0;
  if (e != nullptr) {
    auto n = to_int64(e->value);
    if (!n)
      return otp::error{otp::errc::invalid_argument, "ERR value is not an integer or out of range"};
    if (*n == INT64_MAX)
      return otp::error{otp::errc::invalid_argument, "ERR increment or decrement would overflow"};
    v = *n;
  }
  ++v;
  // Logged as the resulting SET, keeping the key's time to live (as INCR does).
  auto expire = e != nullptr ? e->expire_at_ms : std::nullopt;
  std::vector<std::string> argv{"SET", r.key, std::to_string(v)};
  if (expire) {
    argv.emplace_back("PXAT");
    argv.push_back(std::to_string(*expire));
  }
  append(argv, ctx);
  data_[r.key] = entry{std::to_string(v), expire};
  return v;
}

std::vector<std::string> shard::handle_call(otp::context&, keys r) {
  std::vector<std::string> out;
  const auto now = now_ms();
  for (const auto& [k, e] : data_)
    if ((!e.expire_at_ms || *e.expire_at_ms > now) && glob_match(r.pattern, k))
      out.push_back(k);
  return out;
}

std::int64_t shard::handle_call(otp::context&, dbsize) {
  const auto now = now_ms();
  std::int64_t n = 0;
  for (const auto& [k, e] : data_)
    n += (!e.expire_at_ms || *e.expire_at_ms > now) ? 1 : 0;
  return n;
}

void shard::handle_cast(otp::context&, crash) {
  throw std::runtime_error("shard " + std::to_string(config_.index) + " crashed on purpose (DEBUG CRASH)");
}

void shard::handle_info(otp::context&, otp::idle_timeout) {
  if (dirty_ && ::fdatasync(fd_) == 0) {
    dirty_ = false;
    last_sync_ = std::chrono::steady_clock::now();
  }
}

void shard::terminate(otp::context&, const otp::exit_reason&) {
  if (dirty_)
    (void)::fdatasync(fd_);
}

} // namespace kv
