// SPDX-License-Identifier: Apache-2.0
// otp/detail/mailbox.hpp - a process's mailbox: its messages, in arrival order.
#pragma once

#include "otp/detail/item.hpp"

#include <cstdint>

namespace otp::detail {

// The messages a process has received and not yet taken, in arrival order,
// and how many there are (process_info's message_queue_len). Owner thread
// only. Every change goes through here, so the count stays right.
//
// The members are private, which also makes the type non-POD: the control
// block then places a field in its 4 bytes of tail padding
// ([[no_unique_address]]), and stays 128 bytes.
class mailbox {
public:
  [[nodiscard]] item* head() const noexcept { return items_.head; }
  [[nodiscard]] std::uint32_t size() const noexcept { return len_; }
  [[nodiscard]] bool empty() const noexcept { return items_.empty(); }

  void push_back(item* m) noexcept {
    items_.push_back(m);
    ++len_;
  }
  // Takes `it` out; `prev` is the item before it, null if `it` is the head.
  void unlink(item* prev, item* it) noexcept {
    if (prev != nullptr)
      prev->next = it->next;
    else
      items_.head = it->next;
    if (items_.tail == it)
      items_.tail = prev;
    it->next = nullptr;
    --len_;
  }
  // Empties the mailbox; returns its items, linked in order.
  [[nodiscard]] item* take_all() noexcept {
    len_ = 0;
    return items_.take_all();
  }

private:
  item_list items_; // the queue itself, as the signals list is
  std::uint32_t len_ = 0;
};

} // namespace otp::detail
