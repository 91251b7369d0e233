// SPDX-License-Identifier: Apache-2.0
// samples/kvstore/keyspace_test.cpp - records and the key index against a
// std::unordered_map model, with hashes chosen to collide.
#include "keyspace.hpp"

#include <doctest/doctest.h>

#include <map>
#include <random>
#include <string>
#include <unordered_map>

namespace {

using kv::deadline;
using kv::key_index;
using kv::record;

// Owns the records of an index, as a shard does with its all_.
struct table {
  key_index index;
  std::unordered_map<std::string, record*> model;

  ~table() {
    for (auto& [k, r] : model)
      record::destroy(r);
  }
  void put(const std::string& key, std::uint32_t hash, const std::string& value) {
    record* now = record::make(key, hash, {}, value);
    if (auto it = model.find(key); it != model.end()) {
      index.replace(it->second, now);
      record::destroy(it->second);
      it->second = now;
    } else {
      index.reserve_one();
      index.insert(now);
      model.emplace(key, now);
    }
  }
  void erase(const std::string& key) {
    auto it = model.find(key);
    index.erase(it->second);
    record::destroy(it->second);
    model.erase(it);
  }
  // Every key of the model is found, with its record; the others are not.
  void check(const std::vector<std::pair<std::string, std::uint32_t>>& universe) const {
    REQUIRE(index.size() == model.size());
    for (const auto& [k, h] : universe) {
      record* r = index.find(k, h);
      auto it = model.find(k);
      if (it == model.end()) {
        REQUIRE_MESSAGE(r == nullptr, "erased key " << k << " still found");
      } else {
        REQUIRE_MESSAGE(r == it->second, "key " << k << " not found");
        REQUIRE(r->key() == k);
      }
    }
  }
};

} // namespace

TEST_CASE("the key index agrees with a map through random inserts, overwrites and erases, hashes colliding") {
  for (const std::uint32_t distinct_hashes : {1U, 3U, 16U, 1U << 20}) {
    CAPTURE(distinct_hashes);
    std::mt19937 rng(distinct_hashes);
    // Keys with few distinct hashes: long clusters that wrap past the table's end.
    std::vector<std::pair<std::string, std::uint32_t>> universe;
    for (int i = 0; i < 300; ++i)
      universe.emplace_back("k" + std::to_string(i), static_cast<std::uint32_t>(rng() % distinct_hashes) * 2654435761U);
    table t;
    for (int step = 0; step < 20000; ++step) {
      const auto& [k, h] = universe[rng() % universe.size()];
      if (rng() % 3 == 0 && t.model.contains(k))
        t.erase(k);
      else
        t.put(k, h, std::string(rng() % 40, 'v'));
      if (step % 97 == 0)
        t.check(universe);
    }
    t.check(universe);
    while (!t.model.empty())
      t.erase(t.model.begin()->first);
    t.check(universe);
  }
}

TEST_CASE("a record keeps its key, value and deadline, and overwrites in place only within its room") {
  record* r = record::make("key", kv::hash_key("key"), std::optional<std::int64_t>(1234), std::string_view("value"));
  CHECK(r->key() == "key");
  CHECK(r->value() == "value");
  REQUIRE(bool(r->expire_at()));
  CHECK(*r->expire_at() == 1234);
  CHECK(r->hash == kv::hash_key("key"));
  // The same presence of a deadline and a value that fits: in place.
  CHECK(r->assign("v2", std::optional<std::int64_t>(99)));
  CHECK(r->value() == "v2");
  CHECK(*r->expire_at() == 99);
  // A deadline that goes, or a value past the room: a new record is needed.
  CHECK_FALSE(r->assign("v3", {}));
  CHECK_FALSE(r->assign(std::string(4096, 'x'), std::optional<std::int64_t>(99)));
  CHECK(r->value() == "v2");
  record::destroy(r);

  // No deadline, an empty key and an empty value.
  record* e = record::make("", 7, {}, std::string_view());
  CHECK(e->key().empty());
  CHECK(e->value().empty());
  CHECK_FALSE(bool(e->expire_at()));
  record::destroy(e);
}

TEST_CASE("a much shorter value does not keep a long one's room") {
  record* r = record::make("k", 1, {}, std::string(60000, 'b'));
  CHECK(r->heap_bytes() >= 60000);
  CHECK_FALSE(r->assign("x", {})); // the shard makes a small record instead
  record::destroy(r);
}

TEST_CASE("a large value moved in is kept in its own string, not copied") {
  std::string big(1 << 20, 'z');
  const char* bytes = big.data();
  record* r = record::make("big", 5, {}, std::move(big));
  CHECK(r->value().size() == (1U << 20));
  CHECK(r->value().data() == bytes);
  CHECK(r->heap_bytes() > (1U << 20));
  CHECK_FALSE(r->assign("small", {})); // replaced by a new record
  record::destroy(r);
}

TEST_CASE("footprint is what a record of that size takes") {
  for (std::size_t v : {0U, 1U, 100U, 1000U}) {
    record* r = record::make("key:0000001", 3, {}, std::string(v, 'v'));
    CHECK(record::footprint(11, v, false) >= r->heap_bytes() - 16);
    CHECK(record::footprint(11, v, false) <= r->heap_bytes() + 16);
    record::destroy(r);
  }
}

TEST_CASE("a deadline changes in place, or a new record takes the value (a large one without a copy)") {
  record* r = record::make("k", 9, std::optional<std::int64_t>(10), std::string_view("value"));
  CHECK(r->retime(std::optional<std::int64_t>(20)));
  CHECK(*r->expire_at() == 20);
  CHECK_FALSE(r->retime({})); // the presence changes: a new record
  record* n = record::with_deadline(*r, {});
  CHECK(n->key() == "k");
  CHECK(n->value() == "value");
  CHECK(n->hash == 9);
  CHECK_FALSE(bool(n->expire_at()));
  CHECK(r->value() == "value"); // a small value is copied: the old record is still whole
  record::destroy(r);
  record::destroy(n);

  std::string big(1 << 20, 'q');
  const char* bytes = big.data();
  record* b = record::make("big", 4, {}, std::move(big));
  const std::size_t held = b->heap_bytes();
  record* t = record::with_deadline(*b, std::optional<std::int64_t>(99));
  CHECK(t->value().data() == bytes); // the string passed over
  CHECK(*t->expire_at() == 99);
  CHECK(b->value().empty()); // the old record holds nothing more
  CHECK(b->heap_bytes() < held);
  record::destroy(b);
  CHECK(t->value().size() == (1U << 20));
  record::destroy(t);
}
