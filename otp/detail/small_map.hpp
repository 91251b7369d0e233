// SPDX-License-Identifier: Apache-2.0
// otp/detail/small_map.hpp - a map that lives inline while it is small.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <utility>

namespace otp::detail {

// Links and monitors: most processes have none or one or two, a supervisor
// may have a hundred thousand. Up to `inline_cap` entries live inline (no
// allocation: spawn_monitor + exit costs no malloc); beyond that, a hash
// map holds them all, so a huge set still costs O(1) per operation.
template <class K, class V, std::size_t InlineCap = 2>
class small_map {
public:
  /// Inserts (k, v); returns false if `k` was present.
  bool insert(const K& k, const V& v) {
    if (big_)
      return big_->emplace(k, v).second;
    for (std::size_t i = 0; i < n_; ++i)
      if (inline_[i].first == k)
        return false;
    if (n_ < InlineCap) {
      inline_[n_++] = {k, v};
      return true;
    }
    // Built aside, so that running out of memory midway keeps the map as it
    // was (a link map that lost its entries would ignore their exits).
    auto big = std::make_unique<std::unordered_map<K, V>>();
    for (std::size_t i = 0; i < n_; ++i)
      big->emplace(inline_[i].first, inline_[i].second);
    big->emplace(k, v);
    big_ = std::move(big);
    n_ = 0;
    return true;
  }

  /// Removes `k`; returns whether it was present.
  bool erase(const K& k) {
    if (big_)
      return big_->erase(k) != 0;
    for (std::size_t i = 0; i < n_; ++i) {
      if (inline_[i].first == k) {
        inline_[i] = inline_[--n_];
        return true;
      }
    }
    return false;
  }

  [[nodiscard]] const V* find(const K& k) const {
    if (big_) {
      auto it = big_->find(k);
      return it == big_->end() ? nullptr : &it->second;
    }
    for (std::size_t i = 0; i < n_; ++i)
      if (inline_[i].first == k)
        return &inline_[i].second;
    return nullptr;
  }
  [[nodiscard]] V* find(const K& k) { return const_cast<V*>(std::as_const(*this).find(k)); }
  [[nodiscard]] bool contains(const K& k) const { return find(k) != nullptr; }
  [[nodiscard]] std::size_t size() const noexcept { return big_ ? big_->size() : n_; }
  [[nodiscard]] bool empty() const noexcept { return size() == 0; }

  /// Calls f(key, value) for each entry, in no particular order.
  template <class F>
  void for_each(F&& f) const {
    if (big_) {
      for (const auto& [k, v] : *big_)
        f(k, v);
    } else {
      for (std::size_t i = 0; i < n_; ++i)
        f(inline_[i].first, inline_[i].second);
    }
  }

private:
  std::pair<K, V> inline_[InlineCap]{};
  std::unique_ptr<std::unordered_map<K, V>> big_;
  std::uint8_t n_ = 0;
};

} // namespace otp::detail
