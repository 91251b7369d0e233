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
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace kv {

/// A shard's "args" in app.json.
struct shard_config {
  int index = 0;
  std::string data_dir = "/tmp/otp-kvstore";
  std::string appendfsync = "everysec"; ///< always | everysec | no (as Redis's)
};

/// Counters INFO reports, shared by the whole program.
struct server_stats {
  static constexpr int max_shards = 64;
  std::array<std::atomic<int>, max_shards> shard_starts{};
  std::atomic<int> shards{0};
  std::atomic<long> connections{0};
  std::atomic<long> commands{0};
};
server_stats& stats();

/// The registered name of shard `i`.
[[nodiscard]] std::string shard_name(int i);

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
  std::vector<std::string> handle_call(otp::context&, keys r);
  std::int64_t handle_call(otp::context&, dbsize);
  void handle_cast(otp::context&, crash);
  void handle_info(otp::context&, otp::idle_timeout);
  void terminate(otp::context&, const otp::exit_reason&);

private:
  struct entry {
    std::string value;
    std::optional<std::int64_t> expire_at_ms;
  };
  entry* find_live(const std::string& key);
  void append(const std::vector<std::string>& argv, otp::context& ctx);
  void replay();

  shard_config config_;
  std::unordered_map<std::string, entry> data_;
  int fd_ = -1;
  std::chrono::steady_clock::time_point last_sync_{};
  bool dirty_ = false;
};

} // namespace kv
