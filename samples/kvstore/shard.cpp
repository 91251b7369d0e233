// SPDX-License-Identifier: Apache-2.0
#include "shard.hpp"

#include "resp.hpp"

#include "otp/logger.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
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

using namespace std::chrono_literals;
constexpr auto tick_interval = 100ms; // as Redis's hz 10
constexpr std::size_t read_chunk = 1 << 20;
// A rewrite syncs its new log every few megabytes, so that the sync before
// the rename is short (the shard waits for it).
constexpr std::uint64_t rewrite_sync_bytes = 4 << 20;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
    .count();
}

[[noreturn]] void fail(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

void write_all(int fd, std::string_view bytes, const std::string& what) {
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      fail(what);
    done += static_cast<std::size_t>(n);
  }
}

// open(2) that never follows a symbolic link in the last component.
int open_nofollow(const std::string& path, int flags) {
  const int fd = ::open(path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0 && errno == ELOOP)
    throw std::runtime_error(path + " is a symbolic link; refusing to follow it (move it away)");
  return fd;
}

void sync_dir(const std::string& dir) {
  const int d = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d < 0)
    fail("open the data directory " + dir);
  const int rc = ::fsync(d);
  ::close(d);
  if (rc != 0)
    fail("fsync the data directory " + dir);
}

// ---- the log's records ----

enum class parse_status { ok, incomplete, bad };

struct parsed {
  parse_status status = parse_status::ok;
  std::size_t end = 0;      // bytes of the record
  std::size_t bad_at = 0;   // offset of the bad byte, from the record's start
  std::string why;
  std::size_t last_elem = 0; // where the last element's '$' is
};

// A decimal length after '*' or '$': digits, CR, LF; no sign, no leading zero.
parse_status read_len(std::string_view b, std::size_t& p, std::int64_t max, std::int64_t& v, parsed& o) {
  const std::size_t first = p;
  v = 0;
  for (;; ++p) {
    if (p >= b.size())
      return parse_status::incomplete;
    const char c = b[p];
    if (c == '\r')
      break;
    if (c < '0' || c > '9' || p - first >= 10 || (p > first && b[first] == '0')) {
      o.bad_at = p;
      o.why = "a bad length";
      return parse_status::bad;
    }
    v = v * 10 + (c - '0');
  }
  if (p == first || v > max) {
    o.bad_at = first;
    o.why = "a bad length";
    return parse_status::bad;
  }
  if (p + 1 >= b.size())
    return parse_status::incomplete;
  if (b[p + 1] != '\n') {
    o.bad_at = p + 1;
    o.why = "expected LF after CR";
    return parse_status::bad;
  }
  p += 2;
  return parse_status::ok;
}

// One RESP array of bulk strings, strictly (no inline commands): the
// longest valid record has 6 elements (SET k v PXAT ms crc).
parsed parse_record(std::string_view b, std::vector<std::string>& argv) {
  parsed o;
  argv.clear();
  if (b.empty()) {
    o.status = parse_status::incomplete;
    return o;
  }
  if (b[0] != '*') {
    o.status = parse_status::bad;
    o.why = "expected '*' (the start of a RESP array)";
    return o;
  }
  std::size_t p = 1;
  std::int64_t count = 0;
  if ((o.status = read_len(b, p, 6, count, o)) != parse_status::ok)
    return o;
  if (count == 0) {
    o.status = parse_status::bad;
    o.bad_at = 1;
    o.why = "an empty array";
    return o;
  }
  for (std::int64_t i = 0; i < count; ++i) {
    if (p >= b.size()) {
      o.status = parse_status::incomplete;
      return o;
    }
    if (b[p] != '$') {
      o.status = parse_status::bad;
      o.bad_at = p;
      o.why = "expected '$' (a bulk string)";
      return o;
    }
    o.last_elem = p;
    ++p;
    std::int64_t len = 0;
    if ((o.status = read_len(b, p, max_bulk_len, len, o)) != parse_status::ok)
      return o;
    const auto n = static_cast<std::size_t>(len);
    const std::size_t left = b.size() - p;
    if ((left > n && b[p + n] != '\r') || (left > n + 1 && b[p + n + 1] != '\n')) {
      o.status = parse_status::bad;
      o.bad_at = left > n && b[p + n] != '\r' ? p + n : p + n + 1;
      o.why = "a bulk string not ended by CRLF";
      return o;
    }
    if (left < n + 2) {
      o.status = parse_status::incomplete;
      return o;
    }
    argv.emplace_back(b.substr(p, n));
    p += n + 2;
  }
  o.end = p;
  return o;
}

// Whether argv is a command the log may hold; otherwise says why not.
std::string check_command(const std::vector<std::string>& argv) {
  if (argv[0] == "SET") {
    if (argv.size() == 3)
      return {};
    if (argv.size() == 5 && argv[3] == "PXAT" && to_int64(argv[4]))
      return {};
    return "a SET record of the wrong form";
  }
  if (argv[0] == "DEL")
    return argv.size() == 2 ? std::string() : std::string("a DEL record of the wrong form");
  return "not a SET or DEL record";
}

bool is_hex8(std::string_view s) {
  return s.size() == 8 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string hex8(std::uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

} // namespace

namespace aof {

std::uint32_t crc32(std::string_view bytes, std::uint32_t crc) noexcept {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k)
        c = (c & 1) != 0 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  crc = ~crc;
  for (const char ch : bytes)
    crc = table[(crc ^ static_cast<unsigned char>(ch)) & 0xFFU] ^ (crc >> 8);
  return ~crc;
}

void encode(std::string& out, const std::vector<std::string>& argv) {
  const std::size_t start = out.size();
  out += '*';
  out += std::to_string(argv.size() + 1);
  out += "\r\n";
  for (const auto& a : argv) {
    out += '$';
    out += std::to_string(a.size());
    out += "\r\n";
    out += a;
    out += "\r\n";
  }
  const std::string sum = hex8(crc32(std::string_view(out).substr(start)));
  out += "$8\r\n";
  out += sum;
  out += "\r\n";
}

read_result read(int fd, const std::function<void(std::vector<std::string>&)>& apply) {
  read_result r;
  std::string buf;
  std::size_t pos = 0;        // parsed up to here in buf
  std::uint64_t base = 0;     // file offset of buf[0]
  bool eof = false;
  auto more = [&] {
    if (pos > 0) {
      buf.erase(0, pos);
      base += pos;
      pos = 0;
    }
    const std::size_t had = buf.size();
    buf.resize(had + read_chunk);
    ssize_t n = 0;
    do
      n = ::pread(fd, buf.data() + had, read_chunk, static_cast<off_t>(base + had));
    while (n < 0 && errno == EINTR);
    if (n < 0)
      fail("read the append-only log");
    buf.resize(had + static_cast<std::size_t>(n));
    r.size += static_cast<std::uint64_t>(n);
    eof = n == 0;
  };
  while (!eof && buf.size() < header.size())
    more();
  if (buf.starts_with(header)) {
    r.checksummed = true;
    pos = header.size();
  } else if (!buf.empty() && buf.size() < header.size() && header.starts_with(buf)) {
    r.torn_tail = true; // the header itself was cut short
    return r;
  }
  r.valid_end = pos;
  std::vector<std::string> argv;
  for (;;) {
    const parsed p = parse_record(std::string_view(buf).substr(pos), argv);
    if (p.status == parse_status::incomplete) {
      if (!eof) {
        more();
        continue;
      }
      r.torn_tail = pos < buf.size();
      return r;
    }
    std::string why = p.why;
    std::size_t at = p.bad_at;
    if (p.status == parse_status::ok && r.checksummed) {
      const std::string_view rec = std::string_view(buf).substr(pos, p.end);
      if (argv.size() < 2 || !is_hex8(argv.back()))
        why = "a record without its checksum";
      else if (hex8(crc32(rec.substr(0, p.last_elem))) != argv.back())
        why = "a checksum mismatch (the record's bytes changed)";
      else
        argv.pop_back();
      at = 0;
    }
    if (p.status == parse_status::ok && why.empty()) {
      why = check_command(argv);
      at = 0;
    }
    if (!why.empty()) {
      r.damage_at = base + pos + at;
      r.damage = why;
      return r;
    }
    apply(argv);
    ++r.records;
    pos += p.end;
    r.valid_end = base + pos;
  }
}

} // namespace aof

shard::shard(shard_config c) : config_(std::move(c)) {}

shard::~shard() {
  rewrite_abandon();
  if (fd_ >= 0)
    ::close(fd_);
}

void shard::init(otp::context& ctx) {
  if (config_.appendfsync != "always" && config_.appendfsync != "everysec" && config_.appendfsync != "no")
    throw std::invalid_argument("appendfsync must be always, everysec or no, not " + config_.appendfsync);
  if (config_.rewrite_chunk < 1)
    throw std::invalid_argument("aof_rewrite_chunk must be at least 1, not " + std::to_string(config_.rewrite_chunk));
  prepare_data_dir(config_.count > 0 ? config_.count : stats().shards.load());
  path_ = config_.data_dir + "/shard-" + std::to_string(config_.index) + ".aof";
  fd_ = open_nofollow(path_, O_RDWR | O_CREAT | O_APPEND);
  if (fd_ < 0)
    fail("open " + path_);
  load();
  last_sync_ = std::chrono::steady_clock::now();
  otp::send_after(tick_interval, ctx.self(), tick{});
  ++stats().shard_starts.at(static_cast<std::size_t>(config_.index));
}

// The data directory: ours alone (a directory others can write to lets
// them swap our logs), and made for this shard count (keys are hashed to
// shards by the count: another count would lose and resurrect keys).
void shard::prepare_data_dir(int count) {
  const std::string& dir = config_.data_dir;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec)
      throw std::runtime_error("cannot create the data directory " + dir + ": " + ec.message());
    (void)::chmod(dir.c_str(), 0700);
  }
  struct stat st{};
  if (::stat(dir.c_str(), &st) != 0)
    fail("the data directory " + dir);
  if (!S_ISDIR(st.st_mode))
    throw std::runtime_error("the data directory " + dir + " is not a directory");
  if (st.st_uid != ::geteuid())
    throw std::runtime_error("the data directory " + dir + " belongs to another user (uid " +
                             std::to_string(st.st_uid) + "); use a directory of your own (--data)");
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    throw std::runtime_error("the data directory " + dir + " can be written by others (mode " + mode +
                             "); run chmod go-w " + dir + ", or use another directory (--data)");
  }

  const std::string meta = dir + "/kvstore.meta";
  const int fd = open_nofollow(meta, O_RDONLY);
  if (fd >= 0) {
    char buf[128] = {};
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    int recorded = 0;
    if (n <= 0 || std::sscanf(buf, "kvstore shards %d", &recorded) != 1)
      throw std::runtime_error(meta + ": cannot read the shard count (expected 'kvstore shards N')");
    if (recorded != count)
      throw std::runtime_error("the data in " + dir + " was written by " + std::to_string(recorded) +
                               " shards (" + meta + "), but this server has " + std::to_string(count) +
                               ": keys would be looked up in the wrong shard; start with --shards " +
                               std::to_string(recorded) + ", or use another --data directory");
    return;
  }
  if (errno != ENOENT)
    fail("open " + meta);
  // No metadata yet: logs from before it tell the count by their names.
  int highest = -1;
  for (const auto& f : std::filesystem::directory_iterator(dir, ec)) {
    int i = -1;
    char tail = 0;
    const std::string name = f.path().filename().string();
    if (std::sscanf(name.c_str(), "shard-%d.ao%c", &i, &tail) == 2 && tail == 'f' && name.ends_with(".aof"))
      highest = std::max(highest, i);
  }
  if (highest >= 0 && highest + 1 != count)
    throw std::runtime_error("the data in " + dir + " holds logs of " + std::to_string(highest + 1) +
                             " shards (shard-0.aof to shard-" + std::to_string(highest) +
                             ".aof), but this server has " + std::to_string(count) + "; start with --shards " +
                             std::to_string(highest + 1) + ", or use another --data directory");
  const std::string tmp = meta + ".tmp" + std::to_string(config_.index);
  const int out = open_nofollow(tmp, O_WRONLY | O_CREAT | O_TRUNC);
  if (out < 0)
    fail("create " + tmp);
  try {
    write_all(out, "kvstore shards " + std::to_string(count) + "\n", "write " + tmp);
    if (::fsync(out) != 0)
      fail("fsync " + tmp);
  } catch (...) {
    ::close(out);
    throw;
  }
  ::close(out);
  if (::rename(tmp.c_str(), meta.c_str()) != 0)
    fail("rename " + tmp);
  sync_dir(dir);
}

void shard::load() {
  // The new log of a rewrite cut short by a crash: never a log until renamed.
  (void)::unlink(rewrite_path().c_str());
  const auto now = now_ms();
  const aof::read_result r = aof::read(fd_, [&](std::vector<std::string>& argv) {
    if (argv[0] == "DEL") {
      if (auto it = data_.find(argv[1]); it != data_.end())
        remove(it);
      return;
    }
    std::optional<std::int64_t> at;
    if (argv.size() == 5)
      at = to_int64(argv[4]);
    if (at && *at <= now) { // expired while we were down: never loaded
      if (auto it = data_.find(argv[1]); it != data_.end())
        remove(it);
      return;
    }
    put(argv[1], std::move(argv[2]), at);
  });
  const std::string where = path_ + " at byte " + std::to_string(r.valid_end);
  const std::string dropped = std::to_string(r.size - r.valid_end) + " bytes";
  if (r.damage_at) {
    if (!config_.repair_log)
      throw std::runtime_error(path_ + " is damaged at byte " + std::to_string(*r.damage_at) + ": " + r.damage +
                               ". The " + std::to_string(r.records) + " records before byte " +
                               std::to_string(r.valid_end) + " are intact; start with --repair-log to cut the log there (dropping " +
                               dropped + "), or restore the file from a backup");
    otp::log(otp::log_level::warning, "kvstore", "aof_repaired",
             "kvstore: --repair-log: " + path_ + " was damaged at byte " + std::to_string(*r.damage_at) + " (" +
               r.damage + "); cut at byte " + std::to_string(r.valid_end) + ", dropped " + dropped + ", kept " +
               std::to_string(r.records) + " records");
  } else if (r.torn_tail) {
    otp::log(otp::log_level::warning, "kvstore", "aof_truncated",
             "kvstore: " + path_ + " ended with a record cut short (a crash during a write, never acknowledged): "
               "cut at byte " + std::to_string(r.valid_end) + ", dropped " + dropped);
  }
  if (r.valid_end != r.size && ::ftruncate(fd_, static_cast<off_t>(r.valid_end)) != 0)
    fail("truncate " + path_);
  log_size_ = r.valid_end;
  base_size_ = log_size_;
  if (!r.checksummed)
    rewrite(); // a new log, or one of the first format: start it with the header
}

// Writes the live keys to a new log beside the old one, then swaps it in
// by rename: a crash at any point leaves one whole log, old or new. At
// once: used by load, before the shard serves (the automatic rewrite goes
// in steps, rewrite_continue).
void shard::rewrite() {
  rewrite_begin();
  try {
    while (!rewrite_some(npos)) {
    }
    rewrite_commit();
  } catch (...) {
    rewrite_abandon();
    throw;
  }
  rewrite_installed();
}

// A rewrite writes the keys to the new log a chunk at a time, scanning all_
// from the top down as a KEYS scan does (every key present for the whole
// rewrite is visited), while write_log appends every record to the new log
// too, in order. Records are absolute (SET of a value or of INCR's result,
// PXAT a time, DEL), so replaying the two interleaved in time order gives
// the current state: a key visited after a change is written with the new
// value; a change after the visit follows it in the file; a key deleted
// before its visit is never visited; a key added after the start has its SET.
void shard::rewrite_begin() {
  const std::string tmp = rewrite_path();
  // O_TRUNC: a leftover of a failed rewrite is emptied. O_APPEND: this
  // descriptor becomes the log's once renamed.
  const int fd = open_nofollow(tmp, O_RDWR | O_CREAT | O_TRUNC | O_APPEND);
  if (fd < 0)
    fail("create " + tmp);
  rw_ = rewriting{fd, all_.size(), 0, 0};
  ++stats().rewrites_running;
  try {
    write_all(fd, aof::header, "write " + tmp);
  } catch (...) {
    rewrite_abandon();
    throw;
  }
  rw_->size = aof::header.size();
}

// Writes up to `budget` more keys (and about a megabyte at most) to the new
// log; true once every key is written.
bool shard::rewrite_some(std::size_t budget) {
  rewriting& w = *rw_;
  const auto now = now_ms();
  std::string buf;
  std::vector<std::string> argv;
  w.unvisited = std::min(w.unvisited, all_.size());
  for (; w.unvisited > 0 && budget > 0 && buf.size() < read_chunk; --budget) {
    const node* n = all_[--w.unvisited];
    const entry& e = n->second;
    if (e.expire_at_ms && *e.expire_at_ms <= now)
      continue;
    argv = {"SET", n->first, e.value};
    if (e.expire_at_ms) {
      argv.emplace_back("PXAT");
      argv.push_back(std::to_string(*e.expire_at_ms));
    }
    aof::encode(buf, argv);
  }
  if (!buf.empty()) {
    write_all(w.fd, buf, "write " + rewrite_path());
    w.size += buf.size();
  }
  if (w.size - w.synced >= rewrite_sync_bytes) {
    if (::fdatasync(w.fd) != 0)
      fail("fsync " + rewrite_path());
    w.synced = w.size;
  }
  return w.unvisited == 0;
}

// Makes the new log durable, then the log. Until the rename the old log is
// the log, so a failure here leaves it as it was.
void shard::rewrite_commit() {
  const std::string tmp = rewrite_path();
  if (::fsync(rw_->fd) != 0)
    fail("fsync " + tmp);
  if (::rename(tmp.c_str(), path_.c_str()) != 0)
    fail("rename " + tmp + " to " + path_);
}

// After the rename: the new log's descriptor is the log's. Past this point
// a failure is fatal, as for any write to the log.
void shard::rewrite_installed() {
  ::close(fd_);
  fd_ = rw_->fd;
  log_size_ = base_size_ = rw_->size;
  rw_.reset();
  --stats().rewrites_running;
  dirty_ = false; // the new log was synced whole
  last_sync_ = std::chrono::steady_clock::now();
  sync_dir(config_.data_dir);
}

void shard::rewrite_abandon() noexcept {
  if (!rw_)
    return;
  ::close(rw_->fd);
  (void)::unlink(rewrite_path().c_str());
  rw_.reset();
  --stats().rewrites_running;
}

// An automatic rewrite failed (a full disk, say): the old log still holds
// everything, so the shard goes on with it and tries again later, waiting
// longer after each failure in a row.
void shard::rewrite_failed(const std::string& why) {
  rewrite_abandon();
  ++rewrite_failures_;
  const auto wait = std::chrono::seconds(std::min(60, 1 << std::min(rewrite_failures_ - 1, 6)));
  rewrite_not_before_ = std::chrono::steady_clock::now() + wait;
  otp::log(otp::log_level::warning, "kvstore", "aof_rewrite_failed",
           "kvstore: shard " + std::to_string(config_.index) + ": the rewrite of " + path_ + " failed (" + why +
             "); abandoned, the shard goes on with the old log; next try in " + std::to_string(wait.count()) + " s");
}

// One step of the automatic rewrite, then a message to ourselves for the
// next (as KEYS does), so that requests run between steps.
void shard::rewrite_continue(otp::context& ctx) {
  if (!rw_)
    return; // abandoned meanwhile
  try {
    if (!rewrite_some(static_cast<std::size_t>(config_.rewrite_chunk))) {
      (void)otp::send_after(std::chrono::nanoseconds{0}, ctx.self(), rewrite_step{});
      return;
    }
    rewrite_commit();
  } catch (const std::exception& e) {
    rewrite_failed(e.what());
    return;
  }
  rewrite_installed();
  ++stats().rewrites;
  rewrite_failures_ = 0;
}

void shard::write_log(const std::string& records) {
  write_all(fd_, records, "write " + path_); // a crash: the client gets no OK
  log_size_ += records.size();
  if (rw_) { // the new log gets every record too (see rewrite_begin)
    try {
      write_all(rw_->fd, records, "write " + rewrite_path());
      rw_->size += records.size();
    } catch (const std::exception& e) {
      rewrite_failed(e.what());
    }
  }
  if (config_.appendfsync == "always") {
    if (::fdatasync(fd_) != 0)
      fail("fsync " + path_);
    ++stats().log_syncs;
  } else if (config_.appendfsync == "everysec") {
    dirty_ = true;
    if (std::chrono::steady_clock::now() - last_sync_ >= 1s)
      sync_log();
  }
}

void shard::sync_log() {
  if (::fdatasync(fd_) != 0)
    fail("fsync " + path_);
  ++stats().log_syncs;
  dirty_ = false;
  last_sync_ = std::chrono::steady_clock::now();
}

// Written before the reply: the bytes are in the kernel when the client
// hears OK, so they survive the shard's crash (and, with `always`, the machine's).
void shard::append(const std::vector<std::string>& argv) {
  std::string rec;
  aof::encode(rec, argv);
  write_log(rec);
}

void shard::put(const std::string& key, std::string value, std::optional<std::int64_t> expire_at_ms) {
  auto [it, fresh] = data_.try_emplace(key);
  entry& e = it->second;
  e.value = std::move(value);
  e.expire_at_ms = expire_at_ms;
  if (fresh) {
    e.slot = all_.size();
    all_.push_back(&*it);
  }
  if (expire_at_ms && e.ttl_slot == npos) {
    e.ttl_slot = ttl_.size();
    ttl_.push_back(&*it);
  } else if (!expire_at_ms && e.ttl_slot != npos) {
    drop_ttl(e);
  }
}

void shard::drop_ttl(entry& e) {
  node* last = ttl_.back();
  ttl_[e.ttl_slot] = last;
  last->second.ttl_slot = e.ttl_slot;
  ttl_.pop_back();
  e.ttl_slot = npos;
}

void shard::remove(map::iterator it) {
  entry& e = it->second;
  if (e.ttl_slot != npos)
    drop_ttl(e);
  node* last = all_.back();
  all_[e.slot] = last;
  last->second.slot = e.slot;
  all_.pop_back();
  data_.erase(it);
  ++erases_;
}

shard::entry* shard::find_live(const std::string& key) {
  auto it = data_.find(key);
  if (it == data_.end())
    return nullptr;
  if (it->second.expire_at_ms && *it->second.expire_at_ms <= now_ms()) {
    remove(it); // expired: gone (the log keeps the absolute deadline)
    return nullptr;
  }
  return &it->second;
}

std::optional<std::string> shard::handle_call(otp::context&, get r) {
  if (entry* e = find_live(r.key))
    return e->value;
  return std::nullopt;
}

bool shard::handle_call(otp::context&, set r) {
  std::vector<std::string> argv{"SET", r.key, r.value};
  if (r.expire_at_ms) {
    argv.emplace_back("PXAT");
    argv.push_back(std::to_string(*r.expire_at_ms));
  }
  append(argv);
  put(r.key, std::move(r.value), r.expire_at_ms);
  return true;
}

std::int64_t shard::handle_call(otp::context&, del r) {
  if (find_live(r.key) == nullptr)
    return 0;
  append({"DEL", r.key});
  remove(data_.find(r.key));
  return 1;
}

std::int64_t shard::handle_call(otp::context&, exists r) { return find_live(r.key) != nullptr ? 1 : 0; }

otp::result<std::int64_t> shard::handle_call(otp::context&, incr r) {
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
  append(argv);
  put(r.key, std::to_string(v), expire);
  return v;
}

// Looks at up to `budget` keys of all_, from the top down. Keys that stay
// for the whole scan are seen: a removal moves the last key into the hole,
// so unvisited keys only move down; a visited key moved into the unvisited
// part is seen twice (removed at the end).
bool shard::scan_some(scan& s, std::size_t budget) {
  const auto now = now_ms();
  s.unvisited = std::min(s.unvisited, all_.size());
  for (; s.unvisited > 0 && budget > 0; --budget) {
    const node* n = all_[--s.unvisited];
    const entry& e = n->second;
    if ((!e.expire_at_ms || *e.expire_at_ms > now) && glob_match(s.pattern, n->first))
      s.out.push_back(n->first);
  }
  if (s.unvisited > 0)
    return false;
  if (erases_ != s.erases_at_start) {
    std::sort(s.out.begin(), s.out.end());
    s.out.erase(std::unique(s.out.begin(), s.out.end()), s.out.end());
  }
  return true;
}

otp::call_result<std::vector<std::string>> shard::handle_call(otp::context& ctx, keys r) {
  scan s{{}, std::move(r.pattern), all_.size(), {}, erases_};
  if (all_.size() <= scan_chunk) {
    scan_some(s, scan_chunk);
    return std::move(s.out);
  }
  // A long scan goes on in chunks between other requests: a message to
  // ourselves per chunk, through a timer of no length, so that it comes
  // after the next turn of our scheduler (clients that share its core send
  // their requests meanwhile), and behind what already waits.
  s.to = ctx.defer_reply<std::vector<std::string>>();
  scans_.push_back(std::move(s));
  (void)otp::send_after(std::chrono::nanoseconds{0}, ctx.self(), scan_step{});
  return otp::noreply;
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

// Redis's active expiry: sample keys with a deadline, free the expired
// ones (logged as DEL, as Redis does), and go on while more than a quarter
// of a sample had expired, within a time budget.
void shard::expire_cycle() {
  const auto start = std::chrono::steady_clock::now();
  const auto now = now_ms();
  std::string dels;
  for (;;) {
    int sampled = 0;
    int expired = 0;
    for (; sampled < 20 && !ttl_.empty(); ++sampled) {
      node* n = ttl_[rng_() % ttl_.size()];
      if (*n->second.expire_at_ms > now)
        continue;
      aof::encode(dels, {"DEL", n->first});
      remove(data_.find(n->first));
      ++expired;
    }
    if (sampled == 0 || expired * 4 <= sampled || std::chrono::steady_clock::now() - start > 25ms)
      break;
  }
  if (!dels.empty())
    write_log(dels);
}

void shard::handle_info(otp::context& ctx, std::variant<tick, scan_step, rewrite_step> m) {
  if (std::holds_alternative<rewrite_step>(m)) {
    rewrite_continue(ctx);
    return;
  }
  if (std::holds_alternative<scan_step>(m)) {
    scan s = std::move(scans_.front());
    scans_.pop_front();
    if (scan_some(s, scan_chunk)) {
      otp::reply(s.to, std::move(s.out));
    } else {
      scans_.push_back(std::move(s));
      (void)otp::send_after(std::chrono::nanoseconds{0}, ctx.self(), scan_step{});
    }
    return;
  }
  // A timer, not the idle timeout: any message would cancel that one, and
  // a stream of reads would keep a write unsynced for ever.
  otp::send_after(tick_interval, ctx.self(), tick{});
  expire_cycle();
  if (dirty_ && std::chrono::steady_clock::now() - last_sync_ >= 1s)
    sync_log();
  // Redis's auto-rewrite: when the log has doubled since the last rewrite.
  if (!rw_ && log_size_ >= static_cast<std::uint64_t>(config_.rewrite_min_size) && log_size_ >= 2 * base_size_ &&
      std::chrono::steady_clock::now() >= rewrite_not_before_) {
    try {
      rewrite_begin();
    } catch (const std::exception& e) {
      rewrite_failed(e.what());
      return;
    }
    rewrite_continue(ctx);
  }
}

void shard::terminate(otp::context&, const otp::exit_reason&) {
  rewrite_abandon(); // an unfinished new log is of no use
  if (dirty_)
    (void)::fdatasync(fd_);
}

} // namespace kv
