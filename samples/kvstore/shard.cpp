// SPDX-License-Identifier: Apache-2.0
#include "shard.hpp"

#include "resp.hpp"

#include "otp/logger.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
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
constexpr std::array<std::pair<std::string_view, eviction_policy>, 6> policies{{
  {"noeviction", eviction_policy::noeviction},
  {"allkeys-lru", eviction_policy::allkeys_lru},
  {"volatile-lru", eviction_policy::volatile_lru},
  {"allkeys-random", eviction_policy::allkeys_random},
  {"volatile-random", eviction_policy::volatile_random},
  {"volatile-ttl", eviction_policy::volatile_ttl},
}};
} // namespace

std::string_view policy_name(eviction_policy p) noexcept {
  for (const auto& [name, v] : policies)
    if (v == p)
      return name;
  return "noeviction";
}

bool valid_appendfsync(std::string_view s) noexcept { return s == "always" || s == "everysec" || s == "no"; }

std::optional<eviction_policy> parse_policy(std::string_view s) noexcept {
  for (const auto& [name, v] : policies)
    if (name == s)
      return v;
  return std::nullopt;
}

std::optional<std::uint64_t> parse_memory(std::string_view s) noexcept {
  const auto digits = std::min(s.find_first_not_of("0123456789"), s.size());
  std::string unit(s.substr(digits));
  for (auto& c : unit)
    c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  std::uint64_t mul = 0;
  if (unit.empty() || unit == "b")
    mul = 1;
  else if (unit == "k")
    mul = 1000;
  else if (unit == "kb")
    mul = 1024;
  else if (unit == "m")
    mul = 1000 * 1000;
  else if (unit == "mb")
    mul = 1024 * 1024;
  else if (unit == "g")
    mul = 1000ULL * 1000 * 1000;
  else if (unit == "gb")
    mul = 1024ULL * 1024 * 1024;
  // Redis reads a unit alone ("mb") as 0; that is more likely a mistake.
  if (mul == 0 || digits == 0 || digits > 20)
    return std::nullopt;
  std::uint64_t v = 0;
  for (const char c : s.substr(0, digits))
    if (__builtin_mul_overflow(v, 10U, &v) || __builtin_add_overflow(v, static_cast<unsigned>(c - '0'), &v))
      return std::nullopt;
  if (__builtin_mul_overflow(v, mul, &v))
    return std::nullopt;
  return v;
}

namespace {

using namespace std::chrono_literals;
constexpr auto tick_interval = 100ms; // as Redis's hz 10
constexpr std::size_t read_chunk = 1 << 20;
constexpr int eviction_samples = 5; // Redis's maxmemory-samples
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

// Writes the pieces in order, in as few writev calls as the kernel allows;
// returns the bytes written.
std::size_t writev_all(int fd, std::initializer_list<std::string_view> pieces, const std::string& what) {
  std::array<iovec, 3> parts{};
  std::size_t count = 0;
  std::size_t total = 0;
  for (const auto p : pieces)
    if (!p.empty()) {
      parts.at(count++) = iovec{const_cast<char*>(p.data()), p.size()};
      total += p.size();
    }
  std::size_t first = 0;
  while (first < count) {
    const ssize_t n = ::writev(fd, parts.data() + first, static_cast<int>(count - first));
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      fail(what);
    auto left = static_cast<std::size_t>(n);
    for (; first < count && left >= parts[first].iov_len; ++first)
      left -= parts[first].iov_len;
    if (first < count) {
      parts[first].iov_base = static_cast<char*>(parts[first].iov_base) + left;
      parts[first].iov_len -= left;
    }
  }
  return total;
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

void put_hex8(char* at, std::uint32_t v) noexcept {
  constexpr char digits[] = "0123456789abcdef";
  for (int i = 7; i >= 0; --i, v >>= 4)
    at[i] = digits[v & 0xFU];
}

std::string hex8(std::uint32_t v) {
  std::string s(8, '0');
  put_hex8(s.data(), v);
  return s;
}

void put_len(std::string& out, char type, std::size_t n) {
  char buf[24];
  buf[0] = type;
  const auto [end, ec] = std::to_chars(buf + 1, buf + sizeof buf - 2, n);
  (void)ec;
  end[0] = '\r';
  end[1] = '\n';
  out.append(buf, static_cast<std::size_t>(end + 2 - buf));
}

void put_bulk(std::string& out, std::string_view a) {
  put_len(out, '$', a.size());
  out += a;
  out += "\r\n";
}

// The digits of n, in `buf`.
std::string_view digits(char (&buf)[24], std::int64_t n) {
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
  (void)ec;
  return {buf, static_cast<std::size_t>(end - buf)};
}

// A SET record, with PXAT when the key has a deadline.
void encode_set(std::string& out, std::string_view key, std::string_view value, std::optional<std::int64_t> at) {
  char ms[24];
  if (at)
    aof::encode(out, {"SET", key, value, "PXAT", digits(ms, *at)});
  else
    aof::encode(out, {"SET", key, value});
}

void put_checksum(std::string& out, std::uint32_t crc) {
  out += "$8\r\n";
  const std::size_t at = out.size();
  out.append(10, '\n');
  put_hex8(out.data() + at, crc);
  out[at + 8] = '\r';
}

} // namespace

namespace aof {

// Slicing by 8: eight tables, eight bytes a step (the byte-at-a-time
// loop was most of the cost of logging a small SET).
std::uint32_t crc32(std::string_view bytes, std::uint32_t crc) noexcept {
  static const auto table = [] {
    std::array<std::array<std::uint32_t, 256>, 8> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k)
        c = (c & 1) != 0 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (std::uint32_t i = 0; i < 256; ++i)
      for (std::size_t k = 1; k < 8; ++k)
        t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFFU];
    return t;
  }();
  crc = ~crc;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  std::size_t n = bytes.size();
  for (; n >= 8; n -= 8, p += 8) {
    const std::uint32_t lo = crc ^ (std::uint32_t{p[0]} | std::uint32_t{p[1]} << 8 | std::uint32_t{p[2]} << 16 |
                                    std::uint32_t{p[3]} << 24);
    crc = table[7][lo & 0xFFU] ^ table[6][(lo >> 8) & 0xFFU] ^ table[5][(lo >> 16) & 0xFFU] ^ table[4][lo >> 24] ^
          table[3][p[4]] ^ table[2][p[5]] ^ table[1][p[6]] ^ table[0][p[7]];
  }
  for (; n > 0; --n, ++p)
    crc = table[0][(crc ^ *p) & 0xFFU] ^ (crc >> 8);
  return ~crc;
}

void encode(std::string& out, std::initializer_list<std::string_view> argv) {
  const std::size_t start = out.size();
  put_len(out, '*', argv.size() + 1);
  for (const auto a : argv)
    put_bulk(out, a);
  put_checksum(out, crc32(std::string_view(out).substr(start)));
}

split_record encode_split(std::initializer_list<std::string_view> before, std::string_view big,
                          std::initializer_list<std::string_view> after) {
  split_record r;
  put_len(r.head, '*', before.size() + after.size() + 2);
  for (const auto a : before)
    put_bulk(r.head, a);
  put_len(r.head, '$', big.size());
  r.tail = "\r\n";
  for (const auto a : after)
    put_bulk(r.tail, a);
  put_checksum(r.tail, crc32(r.tail, crc32(big, crc32(r.head))));
  return r;
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
  for (record* r : all_)
    record::destroy(r);
  rewrite_abandon();
  if (fd_ >= 0)
    ::close(fd_);
}

otp::task<void> shard_clock(int count) {
  for (;;) {
    co_await otp::sleep_for(tick_interval);
    for (int i = 0; i < count; ++i)
      if (const auto p = otp::whereis(shard_name(i)))
        otp::send(*p, shard::tick{});
  }
}

void shard::init(otp::context& /*ctx*/) {
  if (!valid_appendfsync(config_.appendfsync))
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

// Replay never evicts (put() only counts): a log whose data is past the
// limit loads whole, as Redis loads its AOF; the writes after it evict.
void shard::load() {
  // The new log of a rewrite cut short by a crash: never a log until renamed.
  (void)::unlink(rewrite_path().c_str());
  const auto now = now_ms();
  const aof::read_result r = aof::read(fd_, [&](std::vector<std::string>& argv) {
    const hashed_key key(argv[1]);
    if (argv[0] == "DEL") {
      if (record* gone = find(key))
        remove(gone);
      return;
    }
    std::optional<std::int64_t> at;
    if (argv.size() == 5)
      at = to_int64(argv[4]);
    if (deadline(at).passed(now)) { // expired while we were down: never loaded
      if (record* gone = find(key))
        remove(gone);
      return;
    }
    put(key, at, std::move(argv[2]));
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
  w.unvisited = std::min(w.unvisited, all_.size());
  for (; w.unvisited > 0 && budget > 0 && buf.size() < read_chunk; --budget) {
    const record* r = all_[--w.unvisited];
    const deadline at = r->expire_at();
    if (at.passed(now))
      continue;
    encode_set(buf, r->key(), r->value(), at);
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

// `records`, then `big` and `tail` (a record written from where its large
// value is, see aof::encode_split), in one write.
void shard::write_log(std::string_view records, std::string_view big, std::string_view tail) {
  log_size_ += writev_all(fd_, {records, big, tail}, "write " + path_); // a crash: the clients get no OK
  if (rw_) { // the new log gets every record too (see rewrite_begin)
    try {
      rw_->size += writev_all(rw_->fd, {records, big, tail}, "write " + rewrite_path());
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

// A SET record, into the pending records; one with a large value is
// written at once from where the value is, after the records before it.
void shard::log_set(std::string_view key, std::string_view value, std::optional<std::int64_t> expire_at_ms) {
  if (value.size() < big_value) {
    encode_set(pending_log_, key, value, expire_at_ms);
    return;
  }
  char ms[24];
  aof::split_record r = expire_at_ms ? aof::encode_split({"SET", key}, value, {"PXAT", digits(ms, *expire_at_ms)})
                                     : aof::encode_split({"SET", key}, value, {});
  pending_log_ += r.head;
  write_log(pending_log_, value, r.tail);
  pending_log_.clear();
}

void shard::account(std::int64_t delta) {
  used_ = static_cast<std::uint64_t>(static_cast<std::int64_t>(used_) + delta);
  stats().shard_memory.at(static_cast<std::size_t>(config_.index)).store(used_, std::memory_order_relaxed);
}

void shard::put(hashed_key key, std::optional<std::int64_t> expire_at_ms, std::string_view value) {
  record* r = find(key);
  if (r != nullptr) {
    const std::size_t before = r->heap_bytes();
    if (r->assign(value, expire_at_ms)) {
      r->used_at = ++clock_;
      account(static_cast<std::int64_t>(r->heap_bytes()) - static_cast<std::int64_t>(before));
      return;
    }
  }
  install(r, record::make(key.text, key.hash, expire_at_ms, value));
}

void shard::put(hashed_key key, std::optional<std::int64_t> expire_at_ms, std::string&& value) {
  if (value.size() < record::own_string_from) {
    put(key, expire_at_ms, std::string_view(value)); // copied: may overwrite in place
    return;
  }
  install(find(key), record::make(key.text, key.hash, expire_at_ms, std::move(value)));
}

// Puts the new record `now` in place of `old` (the same key), or adds it
// when `old` is null, and counts it. The steps that can fail come first.
void shard::install(record* old, record* now) { install(old, now, old != nullptr ? old->heap_bytes() : 0); }

// `old_bytes`: what `old` held when counted (with_deadline takes a large
// value's string from it before this).
void shard::install(record* old, record* now, std::size_t old_bytes) {
  now->used_at = ++clock_;
  const bool timed = bool(now->expire_at());
  if (old == nullptr) {
    try {
      index_.reserve_one();
      all_.push_back(now);
      if (timed) {
        try {
          ttl_.push_back(now);
        } catch (...) {
          all_.pop_back();
          throw;
        }
      }
    } catch (...) {
      record::destroy(now);
      throw;
    }
    now->slot = static_cast<std::uint32_t>(all_.size() - 1);
    if (timed)
      now->ttl_slot = static_cast<std::uint32_t>(ttl_.size() - 1);
    index_.insert(now);
    account(static_cast<std::int64_t>(now->heap_bytes() + key_overhead));
    return;
  }
  if (timed && old->ttl_slot == record::no_slot) {
    try {
      ttl_.push_back(old); // re-pointed below
    } catch (...) {
      record::destroy(now);
      throw;
    }
    old->ttl_slot = static_cast<std::uint32_t>(ttl_.size() - 1);
  } else if (!timed && old->ttl_slot != record::no_slot) {
    drop_ttl(old);
  }
  now->slot = old->slot;
  all_[now->slot] = now;
  now->ttl_slot = old->ttl_slot;
  if (now->ttl_slot != record::no_slot)
    ttl_[now->ttl_slot] = now;
  index_.replace(old, now);
  account(static_cast<std::int64_t>(now->heap_bytes()) - static_cast<std::int64_t>(old_bytes));
  record::destroy(old);
}

void shard::drop_ttl(record* r) noexcept {
  record* last = ttl_.back();
  ttl_[r->ttl_slot] = last;
  last->ttl_slot = r->ttl_slot;
  ttl_.pop_back();
  r->ttl_slot = record::no_slot;
}

void shard::remove(record* r) noexcept {
  if (r->ttl_slot != record::no_slot)
    drop_ttl(r);
  record* last = all_.back();
  all_[r->slot] = last;
  last->slot = r->slot;
  all_.pop_back();
  index_.erase(r);
  account(-static_cast<std::int64_t>(r->heap_bytes() + key_overhead));
  record::destroy(r);
  ++erases_;
}

// The key's record unless it has expired (then removed). `touch`: counts
// as a use for LRU (TTL does not, as in Redis).
record* shard::find_live(hashed_key key, std::int64_t now, bool touch) {
  record* r = find(key);
  if (r == nullptr)
    return nullptr;
  if (r->expire_at().passed(now)) {
    remove(r); // expired: gone (the log keeps the absolute deadline)
    return nullptr;
  }
  if (touch)
    r->used_at = ++clock_;
  return r;
}

// A new deadline (or none) for a live key, its value unchanged.
void shard::retime(record* r, deadline d) {
  if (r->retime(d)) {
    r->used_at = ++clock_;
    return;
  }
  const std::size_t before = r->heap_bytes();
  install(r, record::with_deadline(*r, d), before);
}

// SET with its options (parsed: NX, XX, GET, KEEPTTL, and the deadline as
// an absolute time), as Redis 7.0: GET replies with the value the key had;
// an unmet NX or XX sets nothing (and replies nil without GET); a deadline
// already past (EXAT, PXAT) deletes the key.
void shard::set(op& o, batch& b, std::int64_t now) {
  const hashed_key key = b.key(o);
  // A plain SET needs no lookup of its own (put() makes the one it needs).
  const bool needs_old = (o.cond & (op::nx | op::xx | op::get_old | op::keepttl)) != 0;
  record* r = needs_old ? find_live(key, now) : nullptr;
  const bool get_old = (o.cond & op::get_old) != 0;
  if (get_old) {
    if (r != nullptr)
      bulk(b.out, r->value());
    else
      null_bulk(b.out);
  }
  const bool as_integer = (o.cond & op::as_integer) != 0;
  if (((o.cond & op::nx) != 0 && r != nullptr) || ((o.cond & op::xx) != 0 && r == nullptr)) {
    if (as_integer)
      integer(b.out, 0);
    else if (!get_old)
      null_bulk(b.out);
    return;
  }
  std::optional<std::int64_t> expire;
  if (o.expire_at_ms != op::no_expiry)
    expire = o.expire_at_ms;
  else if ((o.cond & op::keepttl) != 0 && r != nullptr)
    expire = r->expire_at();
  if (expire && *expire <= now) {
    if (!needs_old)
      r = find_live(key, now);
    if (r != nullptr) {
      aof::encode(pending_log_, {"DEL", key.text});
      remove(r);
    }
  } else {
    log_set(key.text, b.value(o), expire); // before the store: a failed write leaves it as it was
    if (o.value_big)
      put(key, expire, std::move(b.big[o.value_off]));
    else
      put(key, expire, b.value(o));
  }
  if (as_integer)
    integer(b.out, 1);
  else if (!get_old)
    simple(b.out, "OK");
}

// EXPIRE/PEXPIRE (the absolute time and the conditions come parsed), as
// Redis 7.0: 0 for a missing key or an unmet condition; a time already
// past deletes the key. Logged as the SET (PXAT) of the key's value, or as
// its DEL, so that replay needs no other kind of record.
void shard::expire(op& o, batch& b, std::int64_t now) {
  const hashed_key key = b.key(o);
  record* r = find_live(key, now);
  const deadline current = r != nullptr ? r->expire_at() : deadline{};
  const std::int64_t when = o.expire_at_ms;
  const bool refused = r == nullptr || ((o.cond & op::nx) != 0 && current) || ((o.cond & op::xx) != 0 && !current)
                       || ((o.cond & op::gt) != 0 && (!current || when <= *current))
                       || ((o.cond & op::lt) != 0 && current && when >= *current);
  if (refused) {
    integer(b.out, 0);
    return;
  }
  if (when <= now) {
    aof::encode(pending_log_, {"DEL", key.text});
    remove(r);
  } else {
    log_set(key.text, r->value(), when);
    retime(r, std::optional(when));
  }
  integer(b.out, 1);
}

// `room_checked`: its command's room was made already (room_for), so it is
// not refused alone (an MSET is done whole or not at all, as in Redis).
void shard::run(op& o, batch& b, std::int64_t now, bool room_checked) {
  const hashed_key key = b.key(o);
  const std::size_t at = b.out.size();
  auto fail_with = [&](std::string_view text) {
    error(b.out, text);
    o.error = true;
  };
  switch (o.kind) {
    case op::get:
      if (const record* r = find_live(key, now))
        bulk(b.out, r->value());
      else
        null_bulk(b.out);
      break;
    case op::set:
      if (!room_checked && !make_room(growth(b, o))) {
        fail_with(oom_message);
        break;
      }
      set(o, b, now);
      break;
    case op::del:
    case op::exists: {
      record* r = find_live(key, now);
      o.n = r != nullptr ? 1 : 0;
      if (o.kind == op::del && r != nullptr) {
        aof::encode(pending_log_, {"DEL", key.text});
        remove(r);
      }
      integer(b.out, o.n);
      break;
    }
    case op::strlen: {
      const record* r = find_live(key, now);
      integer(b.out, r != nullptr ? static_cast<std::int64_t>(r->value().size()) : 0);
      break;
    }
    case op::getdel: {
      record* r = find_live(key, now);
      if (r == nullptr) {
        null_bulk(b.out);
        break;
      }
      bulk(b.out, r->value());
      aof::encode(pending_log_, {"DEL", key.text});
      remove(r);
      break;
    }
    case op::ttl:
    case op::pttl: {
      const record* r = find_live(key, now, false);
      if (r == nullptr) {
        integer(b.out, -2);
      } else if (const deadline due = r->expire_at(); !due) {
        integer(b.out, -1);
      } else {
        const std::int64_t ms = std::max<std::int64_t>(*due - now, 0);
        integer(b.out, o.kind == op::pttl ? ms : (ms + 500) / 1000);
      }
      break;
    }
    case op::expire:
      expire(o, b, now);
      break;
    case op::persist: {
      record* r = find_live(key, now);
      if (r == nullptr || !r->expire_at()) {
        integer(b.out, 0);
        break;
      }
      log_set(key.text, r->value(), std::nullopt);
      retime(r, {});
      integer(b.out, 1);
      break;
    }
    case op::incr: {
      if (!room_checked && !make_room(growth(b, o))) {
        fail_with(oom_message);
        break;
      }
      const record* r = find_live(key, now);
      std::int64_t v = 0;
      std::optional<std::int64_t> expire;
      if (r != nullptr) {
        const auto n = to_int64(r->value());
        if (!n) {
          fail_with("ERR value is not an integer or out of range");
          break;
        }
        v = *n;
        expire = r->expire_at(); // INCR keeps the time to live
      }
      if (__builtin_add_overflow(v, o.n, &v)) {
        fail_with("ERR increment or decrement would overflow");
        break;
      }
      char buf[24];
      const std::string_view text = digits(buf, v);
      log_set(key.text, text, expire); // logged as the resulting SET
      put(key, expire, text);
      o.n = v;
      integer(b.out, v);
      break;
    }
  }
  o.out_off = at;
  o.out_len = b.out.size() - at;
}

otp::call_result<shard::batch> shard::handle_call(otp::context& ctx, batch b) {
  b.out.clear();
  const auto now = now_ms();
  prefetch(b, 0);
  for (std::size_t i = 0; i < b.ops.size();) {
    const std::size_t group = std::min<std::size_t>(std::max<std::uint32_t>(b.ops[i].group, 1), b.ops.size() - i);
    if (group > 1 && !room_for(b, i, group)) {
      // As Redis refuses a whole command over maxmemory: none of its writes.
      for (std::size_t k = i; k < i + group; ++k) {
        const std::size_t at = b.out.size();
        error(b.out, oom_message);
        b.ops[k].error = true;
        b.ops[k].out_off = at;
        b.ops[k].out_len = b.out.size() - at;
      }
    } else {
      for (std::size_t k = i; k < i + group; ++k) {
        if (k % prefetch_window == 0)
          prefetch(b, k + prefetch_window);
        run(b.ops[k], b, now, group > 1);
      }
    }
    i += group;
  }
  b.big.clear();
  // Replies wait behind records not yet written, so that nobody hears of
  // a write before it is in the log, whoever asked.
  if (pending_log_.empty() && waiting_.empty())
    return b; // (moved: a by-value parameter)
  waiting_.push_back({ctx.defer_reply<batch>(), std::move(b)});
  if (pending_log_.size() >= group_commit_bytes || waiting_.size() >= group_commit_replies)
    flush();
  settle(ctx);
  return otp::noreply;
}

// A pipeline's keys are random lookups in a table larger than the caches:
// each costs a few memory round trips (the slot, then the record). Asking
// for a window of them at once lets those trips overlap.
void shard::prefetch(const batch& b, std::size_t first) const noexcept {
  const std::size_t end = std::min(first + prefetch_window, b.ops.size());
  if (first >= end || (first == 0 && end < 2))
    return; // past the end, or a lone command: nothing to overlap with
  std::uint32_t hashes[prefetch_window];
  for (std::size_t k = first; k < end; ++k) {
    hashes[k - first] = b.ops[k].key_hash;
    index_.prefetch_slot(hashes[k - first]);
  }
  for (std::size_t k = first; k < end; ++k)
    index_.prefetch_record(hashes[k - first]);
}

// Writes the pending records (one write, and with `always` one fsync),
// then sends the replies that waited for them.
void shard::flush() {
  if (!pending_log_.empty()) {
    write_log(pending_log_);
    pending_log_.clear();
    if (pending_log_.capacity() > group_commit_bytes)
      pending_log_.shrink_to_fit();
  }
  for (auto& w : waiting_)
    otp::reply(w.to, std::move(w.b));
  waiting_.clear();
}

// With records or replies waiting, the next wait is a poll: when the
// mailbox is empty, an idle_timeout comes at once and flushes them (as
// Redis writes its log before it sleeps). A poll: set for each wait.
void shard::settle(otp::context& ctx) {
  if (!pending_log_.empty() || !waiting_.empty())
    ctx.set_timeout(std::chrono::nanoseconds{0});
}

// Looks at up to `budget` keys of all_, from the top down. Keys that stay
// for the whole scan are seen: a removal moves the last key into the hole,
// so unvisited keys only move down; a visited key moved into the unvisited
// part is seen twice (removed at the end).
bool shard::scan_some(scan& s, std::size_t budget) {
  const auto now = now_ms();
  s.unvisited = std::min(s.unvisited, all_.size());
  for (; s.unvisited > 0 && budget > 0; --budget) {
    const record* r = all_[--s.unvisited];
    if (!r->expire_at().passed(now) && glob_match(s.pattern, r->key()))
      s.out.emplace_back(r->key());
  }
  if (s.unvisited > 0)
    return false;
  if (erases_ != s.erases_at_start) {
    std::sort(s.out.begin(), s.out.end());
    s.out.erase(std::unique(s.out.begin(), s.out.end()), s.out.end());
  }
  return true;
}

// KEYS and DBSIZE tell of every write in memory: those are written first
// (flush), so that nobody hears of a write that is not in the log.
otp::call_result<std::vector<std::string>> shard::handle_call(otp::context& ctx, keys r) {
  flush();
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
  flush();
  const auto now = now_ms();
  std::int64_t n = 0;
  for (const record* r : all_)
    n += r->expire_at().passed(now) ? 0 : 1;
  return n;
}

void shard::handle_cast(otp::context&, crash) {
  throw std::runtime_error("shard " + std::to_string(config_.index) + " crashed on purpose (DEBUG CRASH)");
}

// Whether the writes of ops [first, first + count) of `b` fit (evicting by
// the policy if need be), all together.
bool shard::room_for(const batch& b, std::size_t first, std::size_t count) {
  std::size_t adding = 0;
  for (std::size_t k = first; k < first + count; ++k)
    adding += growth(b, b.ops[k]);
  return make_room(adding);
}

// What op `o` of `b` adds to used_ at most: a SET its value (and its
// deadline), an INCR the longest int64 in digits (20), the others nothing.
std::size_t shard::growth(const batch& b, const op& o) const {
  if (o.kind != op::set && o.kind != op::incr)
    return 0;
  const hashed_key key = b.key(o);
  const std::size_t size = o.kind == op::set ? o.value_len : 20;
  const record* r = find(key);
  // INCR and SET KEEPTTL keep the key's deadline; SET sets its own or none.
  const bool keeps = o.kind == op::incr || (o.cond & op::keepttl) != 0;
  const bool timed =
    (o.kind == op::set && o.expire_at_ms != op::no_expiry) || (keeps && r != nullptr && bool(r->expire_at()));
  if (r == nullptr)
    return record::footprint(key.text.size(), size, timed) + key_overhead;
  const std::size_t now = r->value().size() + (r->expire_at() ? 8 : 0);
  const std::size_t then = size + (timed ? 8 : 0);
  return then > now ? then - now : 0;
}

// Called before every write that may add data. Evicts by the policy until
// `adding` more bytes fit under the limit, logging each eviction as a DEL
// (before the write's own record, so that replay comes to the same keys).
// False (OOM) when the shard stays over its limit, as Redis refuses only
// then: a write that starts under the limit may end a little over it.
bool shard::make_room(std::size_t adding) {
  const std::uint64_t limit = config_.maxmemory;
  if (limit == 0 || used_ + adding <= limit)
    return true;
  while (used_ + adding > limit) {
    record* victim = eviction_candidate();
    if (victim == nullptr)
      break;
    aof::encode(pending_log_, {"DEL", victim->key()});
    remove(victim);
    ++stats().evicted_keys;
  }
  return used_ <= limit;
}

// Redis's approximation: the best of a few keys sampled from all_ or ttl_
// (the least recently used, or the nearest deadline), or any one of them.
record* shard::eviction_candidate() {
  using enum eviction_policy;
  const eviction_policy p = config_.policy;
  if (p == noeviction)
    return nullptr;
  const auto& pool = p == allkeys_lru || p == allkeys_random ? all_ : ttl_;
  if (pool.empty())
    return nullptr; // volatile-* without volatile keys: as noeviction
  record* best = pool[rng_() % pool.size()];
  if (p == allkeys_random || p == volatile_random)
    return best;
  for (int i = 1; i < eviction_samples; ++i) {
    record* r = pool[rng_() % pool.size()];
    if (p == volatile_ttl ? *r->expire_at() < *best->expire_at()
                          // Ages in unsigned arithmetic, right across the clock's wrap.
                          : clock_ - r->used_at > clock_ - best->used_at)
      best = r;
  }
  return best;
}

// Redis's active expiry: sample keys with a deadline, free the expired
// ones (logged as DEL, as Redis does), and go on while more than a quarter
// of a sample had expired, within a time budget.
void shard::expire_cycle() {
  const auto start = std::chrono::steady_clock::now();
  const auto now = now_ms();
  for (;;) {
    int sampled = 0;
    int expired = 0;
    for (; sampled < 20 && !ttl_.empty(); ++sampled) {
      record* r = ttl_[rng_() % ttl_.size()];
      if (!r->expire_at().passed(now))
        continue;
      aof::encode(pending_log_, {"DEL", r->key()});
      remove(r);
      ++expired;
    }
    if (sampled == 0 || expired * 4 <= sampled || std::chrono::steady_clock::now() - start > 25ms)
      break;
  }
}

void shard::handle_info(otp::context& ctx, std::variant<tick, scan_step, rewrite_step, otp::idle_timeout> m) {
  if (std::holds_alternative<otp::idle_timeout>(m)) {
    flush(); // the mailbox is empty
    return;
  }
  if (std::holds_alternative<rewrite_step>(m)) {
    settle(ctx);
    rewrite_continue(ctx);
    return;
  }
  if (std::holds_alternative<scan_step>(m)) {
    settle(ctx);
    scan s = std::move(scans_.front());
    scans_.pop_front();
    if (scan_some(s, scan_chunk)) {
      flush(); // as in handle_call(keys)
      otp::reply(s.to, std::move(s.out));
    } else {
      scans_.push_back(std::move(s));
      (void)otp::send_after(std::chrono::nanoseconds{0}, ctx.self(), scan_step{});
    }
    return;
  }
  // The clock's tick (shard_clock), not the idle timeout: any message
  // would cancel that one, and a stream of reads would keep a write
  // unsynced for ever.
  expire_cycle();
  flush();
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
  // What was applied is logged and answered, even on a crash (the records
  // are whole: a request fails before its record is made).
  try {
    flush();
  } catch (...) {
    return; // the log cannot be written: nobody hears OK
  }
  if (dirty_)
    (void)::fdatasync(fd_);
}

} // namespace kv
