// SPDX-License-Identifier: Apache-2.0
// samples/kvstore/keyspace.cpp - records and their index.
#include "keyspace.hpp"

#include <malloc.h>

#include <bit>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <utility>

namespace kv {

std::size_t wide_hash(std::string_view key) noexcept { return std::hash<std::string_view>{}(key); }

std::uint32_t hash_key(std::string_view key) noexcept { return fold_hash(wide_hash(key)); }

// ---- record

namespace {
constexpr std::size_t malloc_header = sizeof(void*); // glibc's, per chunk
} // namespace

record::record(std::uint32_t h, std::uint32_t flags, std::size_t key_size, std::size_t value_size) noexcept
  : hash(h), key_size_(static_cast<std::uint32_t>(key_size) | flags), value_size_(static_cast<std::uint32_t>(value_size)) {}

record* record::allocate(std::string_view key, std::uint32_t h, deadline d, std::uint32_t flags, std::size_t value_room) {
  if (d)
    flags |= has_deadline;
  const std::size_t dl = d ? 8 : 0;
  void* mem = std::malloc(sizeof(record) + dl + key.size() + value_room);
  if (mem == nullptr)
    throw std::bad_alloc();
  auto* r = new (mem) record(h, flags, key.size(), 0);
  if (d) {
    const std::int64_t at = *d;
    std::memcpy(r->bytes(), &at, sizeof at);
  }
  if (!key.empty())
    std::memcpy(r->bytes() + dl, key.data(), key.size());
  return r;
}

record* record::make(std::string_view key, std::uint32_t h, deadline d, std::string_view value) {
  record* r = allocate(key, h, d, 0, value.size());
  if (!value.empty())
    std::memcpy(r->value_bytes(), value.data(), value.size());
  r->value_size_ = static_cast<std::uint32_t>(value.size());
  return r;
}

record* record::make(std::string_view key, std::uint32_t h, deadline d, std::string&& value) {
  if (value.size() < own_string_from)
    return make(key, h, d, std::string_view(value));
  auto* s = new std::string(std::move(value));
  record* r = nullptr;
  try {
    r = allocate(key, h, d, big, sizeof s);
  } catch (...) {
    value = std::move(*s);
    delete s;
    throw;
  }
  std::memcpy(r->value_bytes(), &s, sizeof s);
  return r;
}

record* record::with_deadline(record& old, deadline d) {
  if ((old.key_size_ & big) == 0)
    return make(old.key(), old.hash, d, old.value());
  std::string* s = old.big_value();
  record* r = allocate(old.key(), old.hash, d, big, sizeof s);
  std::memcpy(r->value_bytes(), &s, sizeof s);
  std::string* none = nullptr;
  std::memcpy(old.value_bytes(), &none, sizeof none);
  return r;
}

void record::destroy(record* r) noexcept {
  if (r == nullptr)
    return;
  if ((r->key_size_ & big) != 0)
    delete r->big_value();
  r->~record();
  std::free(r);
}

std::size_t record::footprint(std::size_t key_size, std::size_t value_size, bool with_deadline) noexcept {
  const std::size_t chunk = sizeof(record) + (with_deadline ? 8 : 0) + key_size + value_size + malloc_header;
  return (chunk + 15) & ~std::size_t{15};
}

std::string* record::big_value() const noexcept {
  std::string* s = nullptr;
  std::memcpy(&s, value_bytes(), sizeof s);
  return s;
}

std::string_view record::value() const noexcept {
  if ((key_size_ & big) != 0) {
    const std::string* s = big_value();
    return s != nullptr ? std::string_view(*s) : std::string_view();
  }
  return {value_bytes(), value_size_};
}

deadline record::expire_at() const noexcept {
  if ((key_size_ & has_deadline) == 0)
    return {};
  std::int64_t at = 0;
  std::memcpy(&at, bytes(), sizeof at);
  return std::optional(at);
}

bool record::assign(std::string_view value, deadline d) noexcept {
  if ((key_size_ & big) != 0 || bool(d) != ((key_size_ & has_deadline) != 0))
    return false;
  const std::size_t room = malloc_usable_size(this) - sizeof(record) - deadline_room() - key_size();
  // A much shorter value does not keep the old one's room.
  if (value.size() > room || room > 2 * value.size() + 64)
    return false;
  if (d) {
    const std::int64_t at = *d;
    std::memcpy(bytes(), &at, sizeof at);
  }
  if (!value.empty())
    std::memmove(value_bytes(), value.data(), value.size());
  value_size_ = static_cast<std::uint32_t>(value.size());
  return true;
}

std::size_t record::heap_bytes() const noexcept {
  std::size_t n = malloc_usable_size(const_cast<record*>(this)) + malloc_header;
  if ((key_size_ & big) != 0) {
    if (const std::string* s = big_value())
      n += sizeof(std::string) + malloc_header + s->capacity() + 1 + malloc_header;
  }
  return n;
}

bool record::retime(deadline d) noexcept {
  if (bool(d) != ((key_size_ & has_deadline) != 0))
    return false;
  if (d) {
    const std::int64_t at = *d;
    std::memcpy(bytes(), &at, sizeof at);
  }
  return true;
}

// ---- key_index

record* key_index::find(std::string_view key, std::uint32_t hash) const noexcept {
  if (size_ == 0)
    return nullptr;
  const std::uint8_t t = tag(hash);
  for (std::size_t i = home(hash);; i = (i + 1) & mask_) {
    const std::uint8_t at = tags_[i];
    if (at == 0)
      return nullptr;
    if (at == t) {
      record* r = records_[i];
      if (r->hash == hash && r->key() == key)
        return r;
    }
  }
}

void key_index::reserve_one() {
  if (!records_.empty() && (size_ + 1) * 5 <= records_.size() * 4)
    return;
  const std::size_t cap = records_.empty() ? 16 : 2 * records_.size();
  std::vector<std::uint8_t> tags(cap, 0);
  std::vector<record*> records(cap, nullptr);
  tags_.swap(tags);
  records_.swap(records);
  mask_ = cap - 1;
  shift_ = 32 - static_cast<unsigned>(std::countr_zero(cap));
  for (std::size_t i = 0; i < tags.size(); ++i)
    if (tags[i] != 0)
      place(records[i]);
}

void key_index::place(record* r) noexcept {
  std::size_t i = home(r->hash);
  while (tags_[i] != 0)
    i = (i + 1) & mask_;
  tags_[i] = tag(r->hash);
  records_[i] = r;
}

void key_index::insert(record* r) noexcept {
  place(r);
  ++size_;
}

std::size_t key_index::slot_of(const record* r) const noexcept {
  std::size_t i = home(r->hash);
  while (records_[i] != r)
    i = (i + 1) & mask_;
  return i;
}

void key_index::replace(const record* old, record* now) noexcept { records_[slot_of(old)] = now; }

// Backward shift: each record after the hole, up to the next empty slot,
// moves into the hole unless its home lies between the hole and itself
// (cyclically), so that every record stays reachable from its home.
void key_index::erase(const record* r) noexcept {
  std::size_t hole = slot_of(r);
  for (std::size_t j = (hole + 1) & mask_; tags_[j] != 0; j = (j + 1) & mask_) {
    const std::size_t h = home(records_[j]->hash);
    const bool stays = hole < j ? (hole < h && h <= j) : (hole < h || h <= j);
    if (stays)
      continue;
    tags_[hole] = tags_[j];
    records_[hole] = records_[j];
    hole = j;
  }
  tags_[hole] = 0;
  records_[hole] = nullptr;
  --size_;
}

} // namespace kv
