// SPDX-License-Identifier: Apache-2.0
// samples/kvstore/keyspace.hpp - a shard's keys in memory: one allocation
// per key (its record) and an open-addressing index of the records.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kv {

/// An optional deadline (absolute, Unix ms) in 8 bytes instead of 16,
/// read as a std::optional is.
class deadline {
public:
  deadline() = default;
  deadline(std::optional<std::int64_t> v) noexcept { *this = v; } // NOLINT: as the optional it stands for
  deadline& operator=(std::optional<std::int64_t> v) noexcept {
    v_ = !v ? none : *v == none ? none + 1 : *v; // (INT64_MIN, long past, stays past)
    return *this;
  }
  explicit operator bool() const noexcept { return v_ != none; }
  std::int64_t operator*() const noexcept { return v_; }
  operator std::optional<std::int64_t>() const noexcept { // NOLINT
    return v_ != none ? std::optional<std::int64_t>(v_) : std::nullopt;
  }
  /// Whether a key with this deadline has expired at `now_ms`: as Redis,
  /// once now > deadline (never, without one). The one place of the rule.
  [[nodiscard]] bool passed(std::int64_t now_ms) const noexcept { return v_ != none && v_ < now_ms; }

private:
  static constexpr std::int64_t none = INT64_MIN;
  std::int64_t v_ = none;
};

/// A key's full hash: its shard is this modulo the shard count.
[[nodiscard]] std::size_t wide_hash(std::string_view key) noexcept;
/// The 32-bit hash that records keep and the index places by, from the full one.
[[nodiscard]] constexpr std::uint32_t fold_hash(std::size_t wide) noexcept {
  return static_cast<std::uint32_t>(wide ^ (static_cast<std::uint64_t>(wide) >> 32));
}
/// The 32-bit hash of a key: fold_hash(wide_hash(key)).
[[nodiscard]] std::uint32_t hash_key(std::string_view key) noexcept;

/// A key with its hash_key, hashed once per command: the connection hashes
/// it to pick the shard, and the shard's prefetch and lookups reuse that.
struct hashed_key {
  std::string_view text;
  std::uint32_t hash;
  explicit hashed_key(std::string_view key) noexcept : text(key), hash(hash_key(key)) {}
  hashed_key(std::string_view key, std::uint32_t h) noexcept : text(key), hash(h) {}
};

/// A key and its value in one allocation: this header, the deadline when
/// there is one, the key's bytes, then the value's bytes; a large value
/// moved in whole stays in its own string, and the record points at it (no
/// copy of a 48 MiB value). One allocation instead of a map node, a key
/// string and a value string: 1 M keys of 100 bytes take about 170 bytes a
/// key instead of 243, and a GET touches the index and one record.
class record {
public:
  static constexpr std::uint32_t no_slot = UINT32_MAX;
  /// A value at least this long, moved in, stays in its own string.
  static constexpr std::size_t own_string_from = 64 * 1024;

  /// A new record (throws std::bad_alloc).
  static record* make(std::string_view key, std::uint32_t hash, deadline d, std::string_view value);
  /// A new record that keeps `value`'s string, without copying it, when
  /// it is long (own_string_from); a short one is copied in.
  static record* make(std::string_view key, std::uint32_t hash, deadline d, std::string&& value);
  /// A new record with `old`'s key and value and the deadline `d`. A large
  /// value's string passes to it: `old` is left without a value, to be
  /// destroyed (throws std::bad_alloc, and then leaves `old` as it was).
  static record* with_deadline(record& old, deadline d);
  static void destroy(record* r) noexcept;
  /// What a record for this key and value takes on the heap, about.
  [[nodiscard]] static std::size_t footprint(std::size_t key_size, std::size_t value_size, bool with_deadline) noexcept;

  record(const record&) = delete;
  record& operator=(const record&) = delete;

  [[nodiscard]] std::string_view key() const noexcept { return {bytes() + deadline_room(), key_size()}; }
  [[nodiscard]] std::string_view value() const noexcept;
  [[nodiscard]] deadline expire_at() const noexcept;
  /// Overwrites the value and the deadline in place if the value fits the
  /// record's room (without keeping much more room than it needs) and the
  /// deadline's presence does not change; false otherwise (nothing done).
  bool assign(std::string_view value, deadline d) noexcept;
  /// Sets the deadline in place if its presence does not change; false
  /// otherwise (nothing done: with_deadline makes the new record).
  bool retime(deadline d) noexcept;
  /// Bytes of heap it holds, the allocator's headers included.
  [[nodiscard]] std::size_t heap_bytes() const noexcept;

  std::uint32_t slot = no_slot;     ///< index in the shard's all_
  std::uint32_t ttl_slot = no_slot; ///< index in the shard's ttl_, when it has a deadline
  std::uint32_t used_at = 0;        ///< the shard's clock at the last read or write (LRU)
  const std::uint32_t hash;         ///< hash_key(key())

private:
  static constexpr std::uint32_t has_deadline = 1U << 31;
  static constexpr std::uint32_t big = 1U << 30;
  static constexpr std::uint32_t size_mask = big - 1; // keys are at most 512 MB

  record(std::uint32_t hash, std::uint32_t flags, std::size_t key_size, std::size_t value_size) noexcept;
  static record* allocate(std::string_view key, std::uint32_t hash, deadline d, std::uint32_t flags,
                          std::size_t value_room);

  [[nodiscard]] std::uint32_t key_size() const noexcept { return key_size_ & size_mask; }
  [[nodiscard]] std::size_t deadline_room() const noexcept { return (key_size_ & has_deadline) != 0 ? 8 : 0; }
  [[nodiscard]] char* bytes() noexcept { return reinterpret_cast<char*>(this + 1); }
  [[nodiscard]] const char* bytes() const noexcept { return reinterpret_cast<const char*>(this + 1); }
  [[nodiscard]] char* value_bytes() noexcept { return bytes() + deadline_room() + key_size(); }
  [[nodiscard]] const char* value_bytes() const noexcept { return bytes() + deadline_room() + key_size(); }
  [[nodiscard]] std::string* big_value() const noexcept;

  std::uint32_t key_size_;   ///< the key's size, and the two flags
  std::uint32_t value_size_; ///< unused for a big value (its string has it)
};
static_assert(sizeof(record) == 24);

/// The records of a shard by key: linear probing over a power-of-two table
/// of one-byte tags (seven bits of the hash) and record pointers, at most
/// 80% full, with backward-shift deletion (no tombstones). A lookup reads
/// the tags, then only the records whose tag matches.
class key_index {
public:
  key_index() = default;
  key_index(const key_index&) = delete;
  key_index& operator=(const key_index&) = delete;

  [[nodiscard]] record* find(std::string_view key, std::uint32_t hash) const noexcept;
  /// Starts loading what find(hash) reads first, the home slot's tag and
  /// pointer: a batch's lookups then wait for memory together, not in turn.
  void prefetch_slot(std::uint32_t hash) const noexcept {
    if (size_ == 0)
      return;
    const std::size_t i = home(hash);
    __builtin_prefetch(&tags_[i]);
    __builtin_prefetch(&records_[i]);
  }
  /// Then the first record near the home slot whose tag matches (after
  /// prefetch_slot); the tags of a probe are mostly in one line.
  void prefetch_record(std::uint32_t hash) const noexcept {
    if (size_ == 0)
      return;
    const std::uint8_t t = tag(hash);
    for (std::size_t i = home(hash), n = 0; n < 8 && tags_[i] != 0; i = (i + 1) & mask_, ++n)
      if (tags_[i] == t) {
        __builtin_prefetch(records_[i]);
        return;
      }
  }
  /// Makes room for one more record (may rehash; throws std::bad_alloc).
  void reserve_one();
  /// Adds a record whose key is not in the index, after reserve_one().
  void insert(record* r) noexcept;
  void erase(const record* r) noexcept;
  /// Puts `now` where `old` was (the same key).
  void replace(const record* old, record* now) noexcept;
  [[nodiscard]] std::size_t size() const noexcept { return size_; }

private:
  [[nodiscard]] std::size_t home(std::uint32_t hash) const noexcept {
    return static_cast<std::uint32_t>(hash * 0x9E3779B1U) >> shift_;
  }
  static std::uint8_t tag(std::uint32_t hash) noexcept { return static_cast<std::uint8_t>(0x80U | (hash & 0x7FU)); }
  [[nodiscard]] std::size_t slot_of(const record* r) const noexcept;
  void place(record* r) noexcept;

  std::vector<std::uint8_t> tags_; ///< 0: empty
  std::vector<record*> records_;
  std::size_t mask_ = 0;
  unsigned shift_ = 32;
  std::size_t size_ = 0;
};

} // namespace kv
