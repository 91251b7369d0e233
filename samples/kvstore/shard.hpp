// SPDX-License-Identifier: Apache-2.0
// samples/kvstore/shard.hpp - one shard of the key space: a GenServer that
// owns its keys and an append-only log, written before each reply and
// replayed in init, so a crash loses no acknowledged write.
#pragma once

#include "behaviours/gen_server.hpp"
#include "keyspace.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cassert>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <initializer_list>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace kv {

/// What a shard over its memory limit does before a write (Redis's maxmemory-policy).
enum class eviction_policy { noeviction, allkeys_lru, volatile_lru, allkeys_random, volatile_random, volatile_ttl };

/// Redis's names: "allkeys-lru", ...
[[nodiscard]] std::string_view policy_name(eviction_policy p) noexcept;
[[nodiscard]] std::optional<eviction_policy> parse_policy(std::string_view s) noexcept;
/// Redis's appendfsync values: always, everysec, no.
[[nodiscard]] bool valid_appendfsync(std::string_view s) noexcept;

/// A memory size as Redis's memtoull reads it: digits, then nothing or a
/// unit b, k (1000), kb (1024), m, mb, g, gb, any case. Nothing on a bad
/// value or an overflow.
[[nodiscard]] std::optional<std::uint64_t> parse_memory(std::string_view s) noexcept;

/// Each shard's part of a --maxmemory of `total` bytes (0: no limit; else
/// at least a byte, since 0 would be none).
[[nodiscard]] inline std::uint64_t maxmemory_share(std::uint64_t total, int shards) noexcept {
  return total == 0 ? 0 : std::max<std::uint64_t>(1, total / static_cast<unsigned>(std::max(shards, 1)));
}

/// Redis's refusal of a write over maxmemory (the reply's text after '-').
inline constexpr std::string_view oom_message = "OOM command not allowed when used memory > 'maxmemory'.";

/// A shard's "args" in app.json.
struct shard_config {
  int index = 0;
  std::string data_dir; ///< where the logs go (main.cpp: --data, else the per-user default)
  std::string appendfsync = "everysec"; ///< always | everysec | no (as Redis's)
  int count = 0;                        ///< shards in all; 0: stats().shards
  bool repair_log = false;              ///< truncate a damaged log at its first damage instead of refusing
  std::int64_t rewrite_min_size = 64LL * 1024 * 1024; ///< no automatic rewrite below this size (Redis's default)
  std::uint64_t maxmemory = 0; ///< this shard's share of --maxmemory in bytes; 0: no limit
  eviction_policy policy = eviction_policy::noeviction;
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
  std::array<std::atomic<std::uint64_t>, max_shards> shard_memory{}; ///< each shard's estimate (INFO used_memory)
  std::atomic<std::uint64_t> maxmemory{0}; ///< the whole server's limit (all shards)
  std::atomic<eviction_policy> policy{eviction_policy::noeviction};
  std::atomic<long> evicted_keys{0};
  std::atomic<int> rewrites_running{0}; ///< shards rewriting their log now (INFO aof_rewrite_in_progress)
  std::atomic<long> rewrites{0};        ///< automatic rewrites finished (INFO aof_rewrites)
};
server_stats& stats();

/// The registered name of shard `i`.
[[nodiscard]] std::string shard_name(int i);

/// Sends each of `count` shards its periodic tick (fsync, active expiry,
/// log rewrite) every 100 ms, as Redis's hz 10. One process for all: a
/// shard's own pending timer would keep it on its scheduler (cancel_timer
/// is exact there), and shards must move where the cores are free.
otp::task<void> shard_clock(int count);

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
void encode(std::string& out, std::initializer_list<std::string_view> argv);

/// A record whose one large element is written from where it is, not
/// copied: `head` (the record up to that element's bytes), the element,
/// then `tail` (the rest, checksum included).
struct split_record {
  std::string head;
  std::string tail;
};
split_record encode_split(std::initializer_list<std::string_view> before, std::string_view big,
                          std::initializer_list<std::string_view> after);

/// CRC-32 (IEEE 802.3, as zlib's crc32).
[[nodiscard]] std::uint32_t crc32(std::string_view bytes, std::uint32_t crc = 0) noexcept;

} // namespace aof

struct shard {
  /// One key's part of a command (GET, SET and its kin, DEL, EXISTS, INCR
  /// and its kin, TTL, PTTL, EXPIRE and its kin, PERSIST, STRLEN, GETDEL;
  /// MGET, MSET and multi-key DEL/EXISTS are one per key). Its key and value
  /// are bytes of its batch; the shard fills in the result.
  struct op {
    enum kind_t : std::uint8_t { get, set, del, exists, incr, ttl, pttl, expire, persist, strlen, getdel };
    /// Conditions and options. EXPIRE (Redis 7): only without a deadline,
    /// only with one, only a later one, only an earlier one. SET: only a
    /// new key (nx), only an existing one (xx), keep its deadline, reply
    /// with the value it had, reply 1 or 0 (SETNX) instead of OK or nil.
    enum cond_t : std::uint8_t { any = 0, nx = 1, xx = 2, gt = 4, lt = 8, keepttl = 16, get_old = 32, as_integer = 64 };
    static constexpr std::int64_t no_expiry = INT64_MIN;
    kind_t kind = get;
    std::uint32_t key_len = 0;
    std::uint32_t key_hash = 0; ///< hash_key of its key, from the connection
    std::size_t key_off = 0;
    std::size_t value_off = 0; ///< into bytes, or into big when value_big
    std::size_t value_len = 0;
    bool value_big = false;
    std::uint8_t cond = any;               ///< SET, EXPIRE: cond_t bits
    std::int64_t expire_at_ms = no_expiry; ///< SET, EXPIRE: absolute, Unix ms
    /// The first op of a command's ops in this batch (an MSET's) says how
    /// many there are: they are refused together when memory is short.
    std::uint32_t group = 1;
    // Results: the reply as RESP bytes in batch::out, and its number
    // (DEL/EXISTS: 0 or 1; an error reply: error is set). INCR: n is the
    // increment in, and the result out.
    bool error = false;
    std::int64_t n = 0;
    std::size_t out_off = 0;
    std::size_t out_len = 0;
  };
  /// The ops of one client's pipelined commands that fall in one shard, in
  /// order: one call, one log write and one reply for all of them. The
  /// batch owns its bytes (a connection may die while the shard works on
  /// it) and comes back as the reply, so its buffers are reused.
  struct batch {
    std::string bytes;
    std::vector<std::string> big; ///< large values, moved into the store instead of copied
    std::vector<op> ops;
    std::string out;
    /// Empties it for the next round; keeps its room unless a large value grew it.
    void clear() noexcept {
      for (std::string* s : {&bytes, &out})
        if (s->capacity() > big_value)
          std::string().swap(*s);
        else
          s->clear();
      big.clear();
      ops.clear();
    }
    [[nodiscard]] std::string_view key_text(const op& o) const noexcept { return {bytes.data() + o.key_off, o.key_len}; }
    [[nodiscard]] hashed_key key(const op& o) const noexcept {
      assert(o.key_hash == hash_key(key_text(o)) && "an op made without its key's hash");
      return {key_text(o), o.key_hash};
    }
    [[nodiscard]] std::string_view value(const op& o) const noexcept {
      return o.value_big ? std::string_view(big[o.value_off]) : std::string_view(bytes.data() + o.value_off, o.value_len);
    }
  };
  /// Values at least this long travel (and are stored) without a copy.
  static constexpr std::size_t big_value = 64 * 1024;

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
  otp::call_result<batch> handle_call(otp::context& ctx, batch b);
  otp::call_result<std::vector<std::string>> handle_call(otp::context& ctx, keys r);
  std::int64_t handle_call(otp::context& ctx, dbsize);
  void handle_cast(otp::context&, crash);
  void handle_info(otp::context& ctx, std::variant<tick, scan_step, rewrite_step, otp::idle_timeout> m);
  void terminate(otp::context&, const otp::exit_reason&);

private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  // A group commit is written early past these (bounds the replies' wait).
  static constexpr std::size_t group_commit_bytes = 1 << 20;
  static constexpr std::size_t group_commit_replies = 1024;
  /// What a key costs in used_ besides its record's heap_bytes(): its
  /// index slot (9 bytes, at most 80% full, so about 15 on average) and
  /// its place in all_ (8), rounded up.
  static constexpr std::size_t key_overhead = 24;

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

  struct waiting {
    otp::from<batch> to;
    batch b;
  };

  [[nodiscard]] record* find(hashed_key key) const noexcept { return index_.find(key.text, key.hash); }
  record* find_live(hashed_key key, std::int64_t now, bool touch = true);
  void put(hashed_key key, std::optional<std::int64_t> expire_at_ms, std::string_view value);
  void put(hashed_key key, std::optional<std::int64_t> expire_at_ms, std::string&& value);
  void install(record* old, record* now);
  void install(record* old, record* now, std::size_t old_bytes);
  void retime(record* r, deadline d);
  void expire(op& o, batch& b, std::int64_t now);
  void set(op& o, batch& b, std::int64_t now);
  void run(op& o, batch& b, std::int64_t now, bool room_checked);
  /// Ops whose lookups are started together (prefetch), ahead of running them.
  static constexpr std::size_t prefetch_window = 8;
  void prefetch(const batch& b, std::size_t first) const noexcept;
  void log_set(std::string_view key, std::string_view value, std::optional<std::int64_t> expire_at_ms);
  void flush();
  void settle(otp::context& ctx);
  void remove(record* r) noexcept;
  void drop_ttl(record* r) noexcept;
  void write_log(std::string_view records, std::string_view big = {}, std::string_view tail = {});
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
  std::size_t growth(const batch& b, const op& o) const;
  bool make_room(std::size_t adding);
  bool room_for(const batch& b, std::size_t first, std::size_t count);
  record* eviction_candidate();
  void account(std::int64_t delta);

  shard_config config_;
  std::string path_;
  key_index index_;
  std::vector<record*> all_; ///< every key (owned), dense: KEYS scans and samples it
  std::vector<record*> ttl_; ///< keys with a deadline, dense: active expiry samples it
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
  std::uint64_t used_ = 0;  ///< estimated bytes of the data (see key_overhead)
  std::uint32_t clock_ = 0; ///< counts reads and writes, for used_at
  // Group commit: the records of the requests handled since the mailbox
  // was last empty, and their replies, which wait for the records' write
  // (and, with `always`, their fsync). One write for many clients.
  std::string pending_log_;
  std::vector<waiting> waiting_;
};

} // namespace kv
