// SPDX-License-Identifier: Apache-2.0
// otp/delivery.cpp - the send path: push_item picks local_push (same
// thread: plain stores, and a waiting receive matched at once) or
// remote_push (another thread: the hold protocol, docs/design.md), and
// deliver. One translation unit: the hot path, inlined across. (is_local and
// make_ref, which every runtime source calls, are inline in runtime.hpp.)
#include "otp/detail/runtime.hpp"
#include "otp/process.hpp"
#include "otp/scheduler.hpp"

#include <cstdint>

namespace otp::detail {

void local_push(process& p, item* it) noexcept {
  p.wake_streak = 0; // a message from here: nothing to follow (scheduler::follow_waker)
  if (p.inbox.load(std::memory_order_relaxed) != nullptr) [[unlikely]] {
    // Items from other threads wait in the inbox: ours go behind them, as
    // a sender that was remote and is now local (one of us moved) must not
    // overtake its own older items.
    for (item* q = take_fifo(p.inbox); q != nullptr;) {
      item* next = q->next;
      p.signals.push_back(q);
      q = next;
    }
  }
  if (is_message(it->kind) && p.signals.empty()) {
    if (it->kind == item_kind::message)
      p.mailbox.push_back(it);
    else if (!p.offer_reply(it))
      return;
    else
      p.extras->replies_in_a_row = 0; // a local reply: nothing to follow (offer_reply needs extras)
    // Match at once: a message the waiting receive does not want costs no
    // wake-up and no scheduler round trip. The receiver's predicates run as
    // the receiver (self() names it), though on the sender's turn.
    if (p.state == proc_state::waiting && !p.in_ready && match_waiting(p)) {
      p.state = proc_state::runnable;
      p.home()->make_ready(&p, true);
    }
    return;
  }
  // Signals (and messages queued behind them, to keep per-sender order) are
  // handled by the scheduler while the process is suspended.
  p.signals.push_back(it);
  if (!p.in_ready && p.state != proc_state::running && p.state != proc_state::created)
    p.home()->make_ready(&p, true);
}

namespace {

// Who wakes a process from another thread: 1 + our scheduler's index, and
// whether the last remote wake-up came from us too.
std::uint8_t waker_tag(std::uint8_t before) noexcept {
  const scheduler* s = this_thread.sched;
  if (s == nullptr || s->index() >= 127)
    return 0;
  const auto us = static_cast<std::uint8_t>(s->index() + 1);
  return (before & ~process::woken_again) == us ? static_cast<std::uint8_t>(us | process::woken_again) : us;
}

bool remote_push(process& p, std::uint64_t id, item* it) noexcept {
  if (process* me = this_thread.current)
    me->sent_away = true;
  // The hold keeps the block from being recycled while we push; a closed
  // block, or one that now holds another process, refuses the item.
  const std::uint64_t prev = p.refs.fetch_add(1, std::memory_order_acquire);
  const bool open = (prev & process::closed_bit) == 0 && p.id.load(std::memory_order_relaxed) == id;
  if (open) {
    item* head = p.inbox.load(std::memory_order_relaxed);
    do {
      it->next = head;
    } while (!p.inbox.compare_exchange_weak(head, it, std::memory_order_seq_cst, std::memory_order_relaxed));
    // Only the push onto an empty inbox needs to tell the scheduler; the
    // flag keeps the block on its remote-ready stack at most once.
    if (head == nullptr && !p.notified.exchange(true, std::memory_order_seq_cst)) {
      // Holding `notified`, we are the only writer; the drain reads it
      // after the push (scheduler::follow_waker).
      p.woken_by = waker_tag(p.woken_by);
      if (scheduler* s = this_thread.sched)
        s->note_remote_wake();
      p.home()->remote_enqueue(&p);
    }
  } else {
    destroy_item(it);
  }
  p.refs.fetch_sub(1, std::memory_order_release);
  return open;
}

} // namespace

bool push_item(const pid& to, item* it) noexcept {
  process* p = to.control_block();
  if (p == nullptr) {
    destroy_item(it);
    return false;
  }
  if (is_local(p, to)) {
    if (p->id.load(std::memory_order_relaxed) != to.id() || p->state >= proc_state::exiting) {
      destroy_item(it);
      return false;
    }
    local_push(*p, it);
    return true;
  }
  return remote_push(*p, to.id(), it);
}

void deliver(const pid& to, item* it) noexcept { (void)push_item(to, it); }

} // namespace otp::detail
