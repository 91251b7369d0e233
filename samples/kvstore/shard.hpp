// SPDX-License-Identifier: Apache-2.0
// samples/kvstore/shard.hpp - one shard of the key space: a GenServer that
// owns its keys and an append-only log, written before each reply and
// replayed in init, so a crash loses no acknowledged write.
#pragma once

#include "behaviours/gen_server.hpp"

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kv {

/// A shard's "args" in app.json.
struct shard_config {
  int index = 0;
  std::string data_dir; ///< where the logs go (main.cpp: --data, else the per-user default)
  std::string appendfsync = "everysec"; ///< always | everysec | no (as Redis's)
  int count = 0;                        ///< shards in all; 0: stats().shards
  bool repair_log = false;              ///< truncate a damaged log at its first damage instead of refusing
  std::int64_t rewrite_min_size = 64LL * 1024 * 1024; ///< no automatic rewrite below this size (Redis's default)
  std::int64_t rewrite_chunk = 1024; ///< keys an automatic rewrite writes per step
};

/// Counters INFO reports, shared by the whole program.
struct server_stats {
  static constexpr int max_shards = 64;
  std::array<std::atomic<int>, max_shards> shard_starts{};
  std::atomic<int> shards{0};
  std::atomic<long> connections{0};
  std::atomic<long> commands{0};
  std::atomic<long> log_syncs{0}; ///< fdatasync calls on the logs (INFO aof_fsyncs)
  std::atomic<int> rewrites_running{0}; ///< shards rewriting their log now (INFO aof_rewrite_in_progress)
  std::atomic<long> rewrites{0};        ///< automatic rewrites finished (INFO aof_rewrites)
};
server_stats& stats();

/// The registered name of shard `i`.
[[nodiscard]] std::string shard_name(int i);

/// The append-only log's format (see the README): a header record
/// `*2 $5 KVLOG $1 2`, then RESP arrays `SET key value [PXAT ms]` or
/// `DEL key`, each with one more element, the CRC-32 of the record's bytes
/// before it as 8 lowercase hex digits. A log without the header (the first
/// format) has no checksums; it is read, then rewritten in this format.
namespace aof {

inline constexpr std::string_view header = "*2\r\n$5\r\nKVLOG\r\n$1\r\n2\r\n";

/// What reading a log found.
struct read_result {
  std::uint64_t valid_end = 0;     ///< bytes of whole, valid records from the start
  std::uint64_t size = 0;          ///< bytes read in all
  std::uint64_t records = 0;       ///< records applied (the header not counted)
  bool checksummed = false;        ///< the log has the header
  bool torn_tail = false;          ///< the bytes after valid_end are one record cut short
  std::optional<std::uint64_t> damage_at; ///< the offset of the first bad byte
  std::string damage;              ///< what is wrong there
};

/// Reads the log at `fd` from its start in bounded chunks, passing each
/// valid record's arguments (checksum removed) to `apply`. Stops at the
/// first damage; never throws for bad content (only for a failing read).
read_result read(int fd, const std::function<void(std::vector<std::string>&)>& apply);

/// Appends `argv` as one checksummed record.
void encode(std::string& out, const std::vector<std::string>& argv);

/// CRC-32 (IEEE 802.3, as zlib's crc32).
[[nodiscard]] std::uint32_t crc32(std::string_view bytes, std::uint32_t crc = 0) noexcept;

} // namespace aof

struct shard {
  struct get {
    std::string key;
  };
  struct set {
    std::string key;
    std::string value;
    std::optional<std::int64_t> expire_at_ms; ///< absolute, Unix ms
  };
  struct del {
    std::string key;
  };
  struct exists {
    std::string key;
  };
  struct incr {
    std::string key;
  };
  struct keys {
    std::string pattern;
  };
  struct dbsize {};
  struct crash {};

  /// The shard's own periodic timer (fsync, active expiry, log rewrite).
  struct tick {};
  /// Continues the oldest pending KEYS scan by one chunk.
  struct scan_step {};
  /// Continues the log rewrite by one chunk.
  struct rewrite_step {};

  /// Keys a KEYS scan looks at between two chances for other requests.
  static constexpr std::size_t scan_chunk = 256;

  explicit shard(shard_config c);
  shard(const shard&) = delete;
  shard& operator=(const shard&) = delete;
  ~shard();

  void init(otp::context& ctx);
  std::optional<std::string> handle_call(otp::context&, get r);
  bool handle_call(otp::context& ctx, set r);
  std::int64_t handle_call(otp::context& ctx, del r);
  std::int64_t handle_call(otp::context&, exists r);
  otp::result<std::int64_t> handle_call(otp::context& ctx, incr r);
  otp::call_result<std::vector<std::string>> handle_call(otp::context& ctx, keys r);
  std::int64_t handle_call(otp::context&, dbsize);
  void handle_cast(otp::context&, crash);
  void handle_info(otp::context& ctx, std::variant<tick, scan_step, rewrite_step> m);
  void terminate(otp::context&, const otp::exit_reason&);

private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  struct entry {
    std::string value;
    std::optional<std::int64_t> expire_at_ms;
    std::size_t slot = npos;     ///< index in all_
    std::size_t ttl_slot = npos; ///< index in ttl_, when it has a deadline
  };
  using map = std::unordered_map<std::string, entry>;
  using node = map::value_type; // map nodes do not move on rehash

  struct scan {
    otp::from<std::vector<std::string>> to;
    std::string pattern;
    std::size_t unvisited; ///< all_[0, unvisited) is still to look at
    std::vector<std::string> out;
    std::uint64_t erases_at_start;
  };

  /// A log rewrite under way: the new log, `<log>.rewrite`.
  struct rewriting {
    int fd = -1;
    std::size_t unvisited = 0; ///< all_[0, unvisited) is still to write
    std::uint64_t size = 0;    ///< bytes written to the new log
    std::uint64_t synced = 0;  ///< of which fdatasync'd
  };

  entry* find_live(const std::string& key);
  void put(const std::string& key, std::string value, std::optional<std::int64_t> expire_at_ms);
  void remove(map::iterator it);
  void drop_ttl(entry& e);
  void append(const std::vector<std::string>& argv);
  void write_log(const std::string& records);
  void sync_log();
  void prepare_data_dir(int count);
  void load();
  void rewrite();
  void rewrite_begin();
  bool rewrite_some(std::size_t budget);
  void rewrite_commit();
  void rewrite_installed();
  void rewrite_abandon() noexcept;
  void rewrite_failed(const std::string& why);
  void rewrite_continue(otp::context& ctx);
  [[nodiscard]] std::string rewrite_path() const { return path_ + ".rewrite"; }
  void expire_cycle();
  bool scan_some(scan& s, std::size_t budget);

  shard_config config_;
  std::string path_;
  map data_;
  std::vector<node*> all_; ///< every key, dense: KEYS scans and samples it
  std::vector<node*> ttl_; ///< keys with a deadline, dense: active expiry samples it
  std::uint64_t erases_ = 0;
  std::deque<scan> scans_;
  std::minstd_rand rng_{12345};
  int fd_ = -1;
  std::uint64_t log_size_ = 0;
  std::uint64_t base_size_ = 0; ///< the log's size after the last rewrite
  std::chrono::steady_clock::time_point last_sync_{};
  bool dirty_ = false;
  std::optional<rewriting> rw_;
  int rewrite_failures_ = 0; ///< in a row: the next try waits longer
  std::chrono::steady_clock::time_point rewrite_not_before_{};
};

} // namespace kv
